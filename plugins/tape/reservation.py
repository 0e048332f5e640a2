"""Exclusive use of drives, volumes and a pool's media set, across threads and processes.

Each resource is a lock file under ``ctx.state_dir / "locks"`` held with
``flock``: the kernel drops the lock when its holder dies (even by kill -9),
so a crashed backup never leaves a drive reserved. A waiter says so in the log
and the progress line every few seconds and honours cancellation, so a job
that waits for a drive is visibly waiting, not hung.
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from tapir.appliance.plugin_api import DeviceInfo, PluginContext, TapirError

#: Seconds between two "still waiting" reports.
REPORT_EVERY = 5.0
_POLL = 0.2
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class DriveBusy(TapirError):
    """Every drive is in use and the caller asked not to wait."""


class LockBusy(TapirError):
    """A volume or media set is in use and the caller asked not to wait."""


def lock_dir(ctx: PluginContext) -> Path:
    """The folder of the tape plugin's lock files."""
    if ctx.state_dir is None:
        raise TapirError("the tape plugin needs a state folder (PluginContext.state_dir)")
    path = Path(ctx.state_dir) / "locks"
    path.mkdir(parents=True, exist_ok=True)
    return path


class FileLock:
    """One flock'd lock file; ``acquire`` returns False when busy and not waiting."""

    def __init__(self, path: Path, holder: str) -> None:
        self.path = path
        self.holder = holder
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """This object holds the lock."""
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if it is free; never blocks."""
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        # Who holds it, for an operator looking at the lock folder.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {self.holder}\n".encode(), 0)
        self._fd = fd
        return True

    def release(self) -> None:
        """Drop the lock (idempotent)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def current_holder(self) -> str:
        """What the lock file says about its holder (may be stale when free)."""
        try:
            return self.path.read_text().strip()
        except OSError:
            return ""


def _wait_for(
    ctx: PluginContext,
    locks: Sequence[FileLock],
    *,
    what: str,
    wait: bool,
    busy: type[TapirError],
) -> FileLock:
    started = time.monotonic()
    reported = 0.0
    while True:
        for lock in locks:
            if lock.try_acquire():
                if reported:
                    ctx.logger.info("%s is free after %.0f s", what, time.monotonic() - started)
                return lock
        holders = "; ".join(f"{lk.path.stem}: {lk.current_holder()}" for lk in locks)
        if not wait:
            raise busy(f"{what} is in use ({holders})")
        now = time.monotonic()
        if not reported or now - reported >= REPORT_EVERY:
            reported = now
            ctx.logger.warning("waiting for %s (in use: %s)", what, holders)
            ctx.progress.advance(current=f"waiting for {what}")
        ctx.check_canceled()
        time.sleep(_POLL)


def named_lock(ctx: PluginContext, kind: str, name: str, holder: str) -> FileLock:
    """The lock of one resource (``kind`` "drive", "volume" or "pool")."""
    return FileLock(lock_dir(ctx) / f"{kind}-{_UNSAFE.sub('_', name)}.lock", holder)


class DriveLease:
    """A drive reserved for one purpose until :meth:`release` (a context manager)."""

    def __init__(self, drive: DeviceInfo, lock: FileLock) -> None:
        self.drive = drive
        self._lock = lock

    @property
    def held(self) -> bool:
        """The reservation is still held."""
        return self._lock.held

    def release(self) -> None:
        """Give the drive back (idempotent)."""
        self._lock.release()

    def __enter__(self) -> DriveLease:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def reserve_drive(
    ctx: PluginContext, drives: list[DeviceInfo], *, purpose: str, wait: bool = True
) -> DriveLease:
    """Reserve the first free drive of ``drives``; waits visibly unless ``wait`` is False.

    A drive is never used by two leases at once, in this process or another.
    Raises DriveBusy (not waiting) or RunCanceled (the operator cancelled).
    """
    usable = [d for d in drives if d.enabled]
    if not usable:
        raise TapirError("no enabled drive to use (" + ", ".join(d.name for d in drives) + ")")
    locks = [named_lock(ctx, "drive", d.name, purpose) for d in usable]
    lock = _wait_for(ctx, locks, what="a free drive", wait=wait, busy=DriveBusy)
    return DriveLease(usable[locks.index(lock)], lock)


def hold(ctx: PluginContext, kind: str, name: str, *, purpose: str, wait: bool = True) -> FileLock:
    """Take the lock of one volume or pool media set, waiting visibly; LockBusy otherwise."""
    lock = named_lock(ctx, kind, name, purpose)
    return _wait_for(ctx, [lock], what=f"{kind} {name}", wait=wait, busy=LockBusy)
