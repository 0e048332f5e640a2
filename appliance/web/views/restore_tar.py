"""A recovery point's file items as a tar stream (the restore wizard's download).

Written item by item as the items are read, so a download of many gigabytes never
sits in memory. Every chunk is verified on the way (the reader raises on damaged
data); a damaged chunk ends the stream early, and the client sees a cut archive,
never wrong data.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterable, Iterator
from typing import Any

from ...plugin_api.items import Item, ItemKind

BLOCK = tarfile.BLOCKSIZE
READ_SIZE = 1024 * 1024

_TYPES = {
    ItemKind.FILE: tarfile.REGTYPE,
    ItemKind.DIRECTORY: tarfile.DIRTYPE,
    ItemKind.SYMLINK: tarfile.SYMTYPE,
    ItemKind.HARDLINK: tarfile.LNKTYPE,
    ItemKind.FIFO: tarfile.FIFOTYPE,
}


def header(item: Item) -> tarfile.TarInfo | None:
    """The tar header of ``item``; None for kinds a tar of files leaves out (disks, devices)."""
    kind = _TYPES.get(ItemKind(item.kind))
    if kind is None:
        return None
    info = tarfile.TarInfo(item.path.decode("utf-8", "surrogateescape"))
    info.type = kind
    info.mode = item.mode & 0o7777
    info.uid, info.gid = item.uid, item.gid
    info.uname, info.gname = item.user or "", item.group or ""
    info.mtime = item.mtime_ns / 1e9
    if kind == tarfile.REGTYPE:
        info.size = item.size
    elif item.target is not None:
        info.linkname = item.target.decode("utf-8", "surrogateescape")
    return info


def stream(source: Any, items: Iterable[Item]) -> Iterator[bytes]:
    """The tar archive of ``items`` read through ``source`` (a RestoreSource), in pieces."""
    written = 0
    for item in items:
        info = header(item)
        if info is None:
            continue
        block = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        written += len(block)
        yield block
        if info.type != tarfile.REGTYPE:
            continue
        left = info.size
        with source.open(item) as fh:
            while left > 0:
                data = fh.read(min(READ_SIZE, left))
                if not data:
                    break
                left -= len(data)
                written += len(data)
                yield data
        if left > 0:
            raise OSError(f"{info.name}: stored data is {left} bytes shorter than its size")
        pad = -info.size % BLOCK
        written += pad
        yield b"\0" * pad
    end = 2 * BLOCK
    end += -(written + end) % tarfile.RECORDSIZE
    yield b"\0" * end
