"""What keeps a report run safe to stop and to start twice (used by labkit.report): one run
per profile (profile_lock), and SIGINT / SIGTERM end every kernel (each runs in a session of
its own, so a terminal's Ctrl-C never reaches it) and stop the run (Guard)."""
import contextlib
import fcntl
import os
import signal
import threading
import time
from pathlib import Path

from jupyter_client import AsyncKernelManager

class Stopped(KeyboardInterrupt):
    """A stop signal (named by the message) reached the runner while a notebook executed."""

class ProfileBusy(RuntimeError):
    """Another report run holds the profile's lock."""

class TrackedKernelManager(AsyncKernelManager):
    """papermill's kernel manager, remembering every instance so that a stop can kill them."""

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
    """End every tracked kernel (SIGTERM, SIGKILL after `grace` seconds, wait); forget them."""
    procs, deadline = kill_kernels(signal.SIGTERM), time.monotonic() + grace
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    for p in kill_kernels(signal.SIGKILL):
        p.wait(timeout=10)
    TrackedKernelManager.made.clear()

class Guard:
    """Signal handling of one report run, a context manager restoring the previous handlers;
    `armed` while a notebook executes, `signum` the first signal that came (None: none)."""

    def __init__(self):
        self.signum, self.armed, self._previous = None, False, {}

    def __enter__(self) -> "Guard":
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle)
                              for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def _handle(self, signum: int, frame) -> None:
        """Note the first signal, kill the kernels (a swallowed exception still ends the run)
        and, while a notebook runs, raise Stopped once."""
        self.signum = signum if self.signum is None else self.signum
        kill_kernels(signal.SIGTERM)
        if self.armed:
            self.armed = False
            raise Stopped(self.name)

    @contextlib.contextmanager
    def executing(self):
        """Arm the guard around one notebook's execution (an earlier signal raises at once)."""
        if self.signum is not None:
            raise Stopped(self.name)
        self.armed = True
        try:
            yield
        finally:
            self.armed = False

    @property
    def name(self) -> str:
        """The signal's name (SIGINT), '' when none came."""
        return signal.Signals(self.signum).name if self.signum else ""

@contextlib.contextmanager
def profile_lock(folder: Path):
    """Hold `folder`/.report.lock while inside (the file names the holder's pid); ProfileBusy
    when another process holds it."""
    path = Path(folder) / ".report.lock"
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise ProfileBusy(f"another report run of {folder.name!r} is in progress "
                              f"(pid {f.read().strip() or 'unknown'}, lock {path}); wait for it "
                              "to finish or stop it, then run again") from None
        f.truncate(0)
        print(os.getpid(), file=f, flush=True)
        yield path
