"""Cyclic garbage collection held back while a backup runs.

A backup allocates a few container objects per chunk and per item (futures, chunk
references, items), almost none of them in reference cycles, so reference counting
frees them. With the default thresholds the collector still runs every 700
allocations and walks the whole heap (SQLAlchemy, the plugins, ...) each time a
full collection comes round: a profile of a first backup found it holding the GIL
for about 16 % of the time. :func:`relaxed_gc` freezes the objects that exist when a
backup starts (they are never collected anyway) and raises the first threshold;
collection still happens, only less often. Nested and concurrent backups share the
setting; the last one to end restores the thresholds it found.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: Allocations between young collections while a backup runs (Python's default is 700).
BACKUP_GEN0_THRESHOLD = 50_000

_lock = threading.Lock()
_users = 0
_saved: tuple[int, int, int] | None = None


def _enter() -> None:
    global _users, _saved
    with _lock:
        _users += 1
        if _users == 1:
            _saved = gc.get_threshold()
            gc.freeze()
            gen0, gen1, gen2 = _saved
            gc.set_threshold(max(gen0, BACKUP_GEN0_THRESHOLD), gen1, gen2)


def _exit() -> None:
    global _users, _saved
    with _lock:
        if _users == 0:
            return
        _users -= 1
        if _users == 0 and _saved is not None:
            gc.set_threshold(*_saved)
            _saved = None
            gc.unfreeze()


@contextmanager
def relaxed_gc() -> Iterator[None]:
    """Hold back cyclic garbage collection for the duration of the block."""
    _enter()
    try:
        yield
    finally:
        _exit()


class RelaxedGc:
    """The same as :func:`relaxed_gc` for an object with a start and an end (not a block).

    :meth:`release` is idempotent, so an owner may call it from every path that ends.
    """

    def __init__(self) -> None:
        self._held = True
        _enter()

    def release(self) -> None:
        """Restore collection (once)."""
        if self._held:
            self._held = False
            _exit()
