"""What keeps a report run safe to stop and to start twice (used by labkit.report only).

- :func:`profile_lock`: one report run per profile at a time, through an
  ``flock`` on ``reports/<profile>/.report.lock``; a second run gets
  :class:`ProfileBusy`, naming the process that holds it.
- :class:`Guard`: SIGINT (Ctrl-C) and SIGTERM stop the run. While a notebook
  executes, the signal kills the kernel's process group and raises
  :class:`Stopped` in the runner; otherwise the runner sees ``guard.signum``
  at its next check. Either way the runner keeps the partial notebook,
  leaves the lab's earlier results in place and exits 128 + the signal.

papermill starts each kernel through :class:`TrackedKernelManager`, so the
guard knows every kernel and can end it. jupyter_client starts a kernel in a
session of its own: a terminal's Ctrl-C never reaches it, the runner has to.
"""
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
    """The kernel manager papermill is given: it remembers every instance
    (papermill creates them itself), so a stop can kill their kernels."""

    made: list = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        TrackedKernelManager.made.append(self)


def _kernel_processes() -> list:
    """The Popen of every tracked kernel that has not been waited for."""
    procs = (getattr(km.provisioner, "process", None) for km in TrackedKernelManager.made)
    return [p for p in procs if p is not None]


def _killpg(pid: int, sig: int) -> None:
    """Send `sig` to the process group `pid` leads (a kernel leads its own)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def kill_kernels(sig: int = signal.SIGTERM) -> None:
    """Send `sig` to the process group of every tracked kernel still running."""
    for proc in _kernel_processes():
        if proc.poll() is None:
            _killpg(proc.pid, sig)


def reap_kernels(grace: float = 3.0) -> None:
    """End every tracked kernel: SIGTERM to its process group, SIGKILL after
    `grace` seconds, then wait for it; forget them all."""
    kill_kernels(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in _kernel_processes():
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is None:
            _killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    TrackedKernelManager.made.clear()


class Guard:
    """Signal handling for one report run; use as a context manager (it
    restores the previous handlers). `armed` while a notebook executes."""

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
        """Note the first signal; while a notebook runs, kill its kernel (so a
        swallowed exception still ends the run) and raise Stopped once."""
        if self.signum is None:
            self.signum = signum
        kill_kernels(signal.SIGTERM)
        if self.armed:
            self.armed = False
            raise Stopped(self.signum)

    @contextlib.contextmanager
    def executing(self):
        """Arm the guard around one notebook's execution (a signal that came
        before raises at once)."""
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
    """Hold `folder`/.report.lock for the duration; ProfileBusy when another
    process holds it (its pid is written in the file)."""
    path = Path(folder) / LOCK_NAME
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise ProfileBusy(f"another report run of {folder.name!r} is in progress "
                              f"(pid {holder}, lock {path}); wait for it to finish or stop it, "
                              "then run again") from None
        f.truncate(0)
        f.write(f"{os.getpid()}\n")
        f.flush()
        yield path
