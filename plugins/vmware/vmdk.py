"""Restored disk bytes: streamed for an upload, or written sparse to a local file, and the
monolithic flat VMDK descriptor that names them."""

from __future__ import annotations

import functools
import os
import secrets
from collections.abc import Iterator

from tapir.appliance.plugin_api import Item, PluginContext, PluginError, RestoreSource

SECTOR = 512
#: Read size when an item carries no chunk list to follow.
BLOCK = 4 * 1024 * 1024
#: Zero runs this long (and aligned) stay holes in a downloaded image.
SPARSE_BLOCK = 64 * 1024


@functools.lru_cache(maxsize=4)
def _zeros(length: int) -> bytes:
    return bytes(length)


def padded_size(item: Item) -> int:
    """The disk's size rounded up to whole sectors (a VMDK extent counts sectors)."""
    return -(-item.size // SECTOR) * SECTOR


def descriptor(flat_name: str, size: int, create_type: str, adapter: str = "lsilogic") -> str:
    """A one-extent flat descriptor: ``vmfs`` on a datastore, ``monolithicFlat`` elsewhere.

    A new CID and no ddb.uuid: the restored disk is a new disk, not the backed-up one.
    """
    if "/" in flat_name or '"' in flat_name:
        raise PluginError(f"refusing the extent file name {flat_name!r}")
    kind = "VMFS" if create_type == "vmfs" else "FLAT"
    offset = "" if kind == "VMFS" else " 0"
    sectors = size // SECTOR
    cylinders = max(1, min(65535, sectors // (255 * 63)))
    return (
        "# Disk DescriptorFile\n"
        "version=1\n"
        'encoding="UTF-8"\n'
        f"CID={secrets.randbits(32):08x}\n"
        "parentCID=ffffffff\n"
        f'createType="{create_type}"\n\n'
        "# Extent description\n"
        f'RW {sectors} {kind} "{flat_name}"{offset}\n\n'
        "# The Disk Data Base\n#DDB\n\n"
        f'ddb.adapterType = "{adapter}"\n'
        f'ddb.geometry.cylinders = "{cylinders}"\n'
        'ddb.geometry.heads = "255"\n'
        'ddb.geometry.sectors = "63"\n'
        'ddb.virtualHWVersion = "13"\n'
    )


def pieces(item: Item) -> list[tuple[int, int, bool]]:
    """(offset, length, is_hole) over the whole disk, following its chunk list if whole."""
    if item.chunks and item.stored_size == item.size:
        return [(off, ref.length, ref.id is None) for off, ref in item.chunk_offsets()]
    return [(off, min(BLOCK, item.size - off), False) for off in range(0, item.size, BLOCK)]


def _read(disk: object, item: Item, offset: int, length: int) -> bytes:
    data = disk.pread(offset, length)  # type: ignore[attr-defined]
    if len(data) != length:
        raise PluginError(f"{item.path!r}: read {len(data)} of {length} bytes at offset {offset}")
    return bytes(data)


def stream(item: Item, source: RestoreSource, ctx: PluginContext, where: str) -> Iterator[bytes]:
    """The disk's bytes in order, padded to whole sectors; holes are sent as zeros (HTTP
    has no holes) without reading them. Advances the progress by the disk's bytes."""
    disk = source.open_disk(item)
    if disk.size != item.size:
        raise PluginError(f"{item.path!r}: stored disk has {disk.size} bytes, item {item.size}")
    for offset, length, hole in pieces(item):
        ctx.check_canceled()
        yield _zeros(length) if hole else _read(disk, item, offset, length)
        ctx.progress.advance(bytes_done=length, current=where)
    pad = padded_size(item) - item.size
    if pad:
        yield bytes(pad)


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        written = os.pwrite(fd, data, offset)
        data = data[written:]
        offset += written


def write_sparse(item: Item, fd: int, source: RestoreSource, ctx: PluginContext, where: str) -> int:
    """Write the disk to ``fd`` leaving holes and zero blocks unwritten; the file is
    sized to whole sectors. Returns the data bytes written."""
    disk = source.open_disk(item)
    if disk.size != item.size:
        raise PluginError(f"{item.path!r}: stored disk has {disk.size} bytes, item {item.size}")
    written = 0
    zero = _zeros(SPARSE_BLOCK)
    for offset, length, hole in pieces(item):
        ctx.check_canceled()
        if not hole:
            view = memoryview(_read(disk, item, offset, length))
            for start in range(0, length, SPARSE_BLOCK):
                block = view[start : start + SPARSE_BLOCK]
                if block != zero[: len(block)]:
                    _pwrite_all(fd, block, offset + start)
                    written += len(block)
        ctx.progress.advance(bytes_done=length, current=where)
    os.ftruncate(fd, padded_size(item))
    os.fsync(fd)
    return written
