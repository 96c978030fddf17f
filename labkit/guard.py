"""What keeps a report run safe to stop and to start twice (used by labkit.report): one run
per profile (profile_lock), and SIGINT / SIGTERM end every kernel (each runs in a session of
its own, so a terminal's Ctrl-C never reaches it) and stop the run (Guard)."""
from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import threading
import time
from pathlib import Path

from jupyter_client import AsyncKernelManager

SIGNALS = (signal.SIGINT, signal.SIGTERM)
LOCK_NAME = ".report.lock"


class Stopped(KeyboardInterrupt):
    """A stop signal reached the runner while a notebook was executing."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class ProfileBusy(RuntimeError):
    """Another report run holds the profile's lock."""


class TrackedKernelManager(AsyncKernelManager):
    """The kernel manager papermill is given: it remembers every instance, so a stop can
    kill their kernels."""

    made: list = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        TrackedKernelManager.made.append(self)


def kill_kernels(sig: int = signal.SIGTERM) -> list:
    """Send `sig` to the process group (a kernel leads its own) of every tracked kernel still
    running; returns the Popen of every tracked kernel."""
    procs = (getattr(km.provisioner, "process", None) for km in TrackedKernelManager.made)
    procs = [p for p in procs if p is not None]
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, sig)
    return procs


def reap_kernels(grace: float = 3.0) -> None:
    """End every tracked kernel: SIGTERM to its process group, SIGKILL after `grace`
    seconds, then wait for it; forget them all."""
    procs, deadline = kill_kernels(signal.SIGTERM), time.monotonic() + grace
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    for p in kill_kernels(signal.SIGKILL):
        p.wait(timeout=10)
    TrackedKernelManager.made.clear()


class Guard:
    """Signal handling for one report run, as a context manager (restores the previous
    handlers); `armed` while a notebook executes."""

    def __init__(self):
        self.signum: int | None = None
        self.armed = False
        self._previous: dict = {}

    def __enter__(self) -> "Guard":
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def _handle(self, signum: int, frame) -> None:
        """Note the first signal, kill the kernels (a swallowed exception still ends the
        run) and, while a notebook runs, raise Stopped once."""
        self.signum = signum if self.signum is None else self.signum
        kill_kernels(signal.SIGTERM)
        if self.armed:
            self.armed = False
            raise Stopped(self.signum)

    @contextlib.contextmanager
    def executing(self):
        """Arm the guard around one notebook's execution (an earlier signal raises at once)."""
        if self.signum is not None:
            raise Stopped(self.signum)
        self.armed = True
        try:
            yield
        finally:
            self.armed = False

    @property
    def name(self) -> str:
        """The signal's name (SIGINT) or '' when none came."""
        return signal.Signals(self.signum).name if self.signum else ""


@contextlib.contextmanager
def profile_lock(folder: Path):
    """Hold `folder`/.report.lock while inside; ProfileBusy (naming the holder's pid, written
    in the file) when another process holds it."""
    path = Path(folder) / LOCK_NAME
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise ProfileBusy(f"another report run of {folder.name!r} is in progress "
                              f"(pid {f.read().strip() or 'unknown'}, lock {path}); wait for it "
                              "to finish or stop it, then run again") from None
        f.truncate(0)
        f.write(f"{os.getpid()}\n")
        f.flush()
        yield path
