"""What the engine gives a plugin to write a backup into and to read a restore from.

The engine implements these protocols; plugins only call them. Chunking, content
hashing, deduplication, compression, encryption and storage all happen behind
them, so a plugin never sees the pool.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO, Protocol

from .items import Extent, Item

#: Reads ``length`` bytes of a disk from ``offset`` (a snapshot being backed up).
DiskReadFn = Callable[[int, int], bytes]


class FileWriter(Protocol):
    """Receives one file's data in order; returned by :meth:`BackupSink.open_file`."""

    def write(self, data: bytes) -> None:
        """Append data (any size; the engine cuts content-defined chunks)."""

    def hole(self, length: int) -> None:
        """Append ``length`` zero bytes that the source stores as a hole (sparse file)."""

    def flag(self, flag: str) -> None:
        """Mark the item, e.g. ``"changed-while-read"``; restore still works, the run warns."""

    def close(self) -> None:
        """Finish the file; the item is recorded once its chunks are stored."""


class ParentIndex(Protocol):
    """The previous recovery point of the same job and asset (incrementals)."""

    recovery_point_id: str

    def lookup(self, path: bytes) -> Item | None:
        """The item stored at ``path`` in the parent, or None."""


class BackupSink(Protocol):
    """Where a source plugin puts the items of one recovery point."""

    #: The parent recovery point, or None for a full backup.
    parent: ParentIndex | None

    def add(self, item: Item) -> None:
        """Record an item without new data: a directory, a link, a special file, or a file
        whose ``chunks`` were taken unchanged from ``parent`` (its chunks must exist)."""

    def open_file(self, item: Item) -> FileWriter:
        """Start a regular file; write its data to the returned writer, then close it."""

    def add_disk(
        self,
        item: Item,
        read: DiskReadFn,
        extents: Iterable[Extent] | None = None,
        parent: Item | None = None,
    ) -> None:
        """Store a disk image of ``item.size`` bytes.

        Without ``parent``: ``extents`` lists the allocated areas (None: the whole
        disk); everything else is a hole. With ``parent`` (the same disk in the
        previous recovery point): ``extents`` lists the areas changed since it; the
        unchanged chunks are referenced from the parent, so the new point is a
        complete index of the disk (a synthetic full).
        """

    def warn(self, path: bytes | str, message: str) -> None:
        """Record a non-fatal problem with one item (the run ends 'succeeded with warnings')."""


class RestoreSource(Protocol):
    """Read access to one recovery point during a restore."""

    recovery_point_id: str
    #: What the plugin returned as ``BackupResult.metadata`` when it made the point
    #: (a VM's configuration, a database's version...); empty when it returned none.
    metadata: dict[str, object]

    def items(self, paths: Iterable[bytes] | None = None) -> Iterator[Item]:
        """Items in stored order; with ``paths``, only those paths and what lies below them."""

    def open(self, item: Item) -> BinaryIO:
        """A sequential reader over a file's or disk's data; every chunk is verified.

        Holes read as zeros; use ``item.chunks`` to restore them sparse.
        """

    def read_chunk(self, chunk_id: bytes) -> bytes:
        """One chunk's plain data, verified against its content address."""

    def open_disk(self, item: Item) -> DiskImage:
        """A random-access, read-only view of a disk item (fetches only touched chunks)."""


class DiskImage(Protocol):
    """Random-access read-only view of a disk in a recovery point."""

    size: int

    def pread(self, offset: int, length: int) -> bytes:
        """Read ``length`` bytes at ``offset`` (short only at the end of the disk)."""
