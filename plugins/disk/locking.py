"""The pool lock: shared for writers, exclusive for garbage collection and clean-up.

Every holder opens the lock file itself, so each hold is its own open file
description and ``flock`` treats two holders in one process like two processes.
The kernel drops a hold when its process dies (also on ``kill -9``), so a crashed
writer never leaves the pool locked.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from tapir.appliance.plugin_api import TapirError

_POLL_SECONDS = 0.05


class PoolBusy(TapirError):
    """The pool lock could not be taken in time (a backup or a garbage collection runs)."""


class LockHold:
    """One held lock; release it with :meth:`release` or by leaving a ``with`` block."""

    def __init__(self, fd: int, mode: str) -> None:
        self._fd: int | None = fd
        self.mode = mode

    @property
    def held(self) -> bool:
        """True until released."""
        return self._fd is not None

    def release(self) -> None:
        """Give the lock back; calling it twice is harmless."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the description drops the flock

    def __enter__(self) -> LockHold:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class PoolLock:
    """The ``lock`` file of a disk pool."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.path = path
        self.timeout = timeout

    def shared(self, purpose: str) -> LockHold:
        """Wait (up to the timeout) for a shared hold: writers may share the pool."""
        return self._acquire(fcntl.LOCK_SH, "shared", purpose)

    def exclusive(self, purpose: str) -> LockHold:
        """Wait (up to the timeout) for the only hold: no writer is active meanwhile."""
        return self._acquire(fcntl.LOCK_EX, "exclusive", purpose)

    def try_exclusive(self) -> LockHold | None:
        """The exclusive hold if nobody holds the lock right now, else None."""
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        return LockHold(fd, "exclusive")

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise TapirError(f"cannot open the pool lock file {self.path}: {exc}") from exc

    def _acquire(self, operation: int, mode: str, purpose: str) -> LockHold:
        fd = self._open()
        deadline = time.monotonic() + self.timeout
        try:
            # Polling instead of a blocking flock keeps the wait bounded and lets a
            # thread that holds a shared lock itself get an error instead of a deadlock.
            while True:
                try:
                    fcntl.flock(fd, operation | fcntl.LOCK_NB)
                    return LockHold(fd, mode)
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise PoolBusy(
                            f"disk pool at {self.path.parent} is busy: could not take the "
                            f"{mode} lock for {purpose} within {self.timeout:g} s "
                            f"({'a garbage collection' if mode == 'shared' else 'a backup'}"
                            " is probably running); try again later"
                        ) from None
                    time.sleep(_POLL_SECONDS)
        except BaseException:
            os.close(fd)
            raise
