"""The items a source plugin hands to the engine, and the engine hands back on restore.

An item is one entry of a recovery point: a file, a directory, a link, a special
file, or a whole disk image. Paths are bytes, relative and '/'-separated, so that
any byte sequence a file system allows survives a round trip. File and disk data
are lists of chunk references; a reference without an id is a hole (a run of
zeros that is stored as nothing and restored sparse).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum


class ItemKind(StrEnum):
    FILE = "file"
    DIRECTORY = "dir"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"  # target holds the path of the first link, stored earlier
    FIFO = "fifo"
    CHAR_DEVICE = "chardev"
    BLOCK_DEVICE = "blockdev"
    SOCKET = "socket"
    DISK = "disk"  # a virtual disk image: fixed-size chunks aligned to disk offsets


@dataclass(frozen=True, slots=True)
class ChunkRef:
    """One piece of an item's data: a content address and its plain length.

    ``id`` is None for a hole: ``length`` zero bytes that were never stored.
    """

    id: bytes | None
    length: int


@dataclass(slots=True)
class Item:
    """Metadata and data references of one entry in a recovery point."""

    path: bytes
    kind: ItemKind
    mode: int = 0
    uid: int = 0
    gid: int = 0
    user: str | None = None
    group: str | None = None
    mtime_ns: int = 0
    atime_ns: int = 0
    ctime_ns: int = 0
    size: int = 0
    target: bytes | None = None  # symlink target, or the hard link's first path
    rdev: int = 0
    xattrs: dict[bytes, bytes] = field(default_factory=dict)  # POSIX ACLs included
    chunks: list[ChunkRef] = field(default_factory=list)
    # Identity used to match an item with its previous version (incrementals).
    inode: int = 0
    device: int = 0
    # Free-form flags: "changed-while-read", "read-error" ...
    flags: list[str] = field(default_factory=list)
    # Plugin- or kind-specific extras, e.g. {"chunk_size": 4194304} for disks.
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def stored_size(self) -> int:
        """Bytes of data behind the chunk list, holes included."""
        return sum(c.length for c in self.chunks)

    def chunk_offsets(self) -> Iterator[tuple[int, ChunkRef]]:
        """Each chunk with the item offset it starts at."""
        offset = 0
        for ref in self.chunks:
            yield offset, ref
            offset += ref.length


@dataclass(frozen=True, slots=True)
class Extent:
    """A byte range of a disk: ``length`` bytes from ``offset``."""

    offset: int
    length: int

    @property
    def end(self) -> int:
        return self.offset + self.length
