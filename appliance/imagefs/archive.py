"""Files from an image as a tar or zip stream, produced piece by piece.

A file is read in blocks as the stream is consumed, so a large file or folder never
sits in memory. A read error (a damaged chunk or file system) ends the stream with
that error: the consumer sees a cut archive, never wrong data.
"""

from __future__ import annotations

import stat
import tarfile
import time
import zipfile
from collections.abc import Iterator, Sequence

from .address import Address
from .errors import ImageFsError
from .model import DIRECTORY, FILE, SYMLINK, Entry
from .point import PointFiles
from .selection import members

READ_SIZE = 1024 * 1024
FORMATS = ("tar", "zip", "file")


def _tar_header(rel: str, entry: Entry) -> tarfile.TarInfo | None:
    info = tarfile.TarInfo(rel + ("/" if entry.kind == DIRECTORY else ""))
    info.mode = stat.S_IMODE(entry.mode)
    info.uid, info.gid = entry.uid, entry.gid
    info.mtime = int(entry.mtime)
    if entry.kind == FILE:
        info.type, info.size = tarfile.REGTYPE, entry.size
    elif entry.kind == DIRECTORY:
        info.type = tarfile.DIRTYPE
    elif entry.kind == SYMLINK and entry.target is not None:
        info.type, info.linkname = tarfile.SYMTYPE, entry.target
    else:
        return None  # devices, sockets, fifos are not restored
    return info


def _data(files: PointFiles, address: Address, size: int) -> Iterator[bytes]:
    left = size
    with files.open(address) as fh:
        while left > 0:
            block = fh.read(min(READ_SIZE, left))
            if not block:
                break
            left -= len(block)
            yield block
    if left:
        raise ImageFsError(f"{address}: {left} bytes shorter than the file system says")


def tar_stream(files: PointFiles, addresses: Sequence[Address]) -> Iterator[bytes]:
    """A POSIX (pax) tar archive of the addresses and everything below them."""
    written = 0
    for rel, address, entry in members(files, addresses):
        info = _tar_header(rel, entry)
        if info is None:
            continue
        head = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        written += len(head)
        yield head
        if info.type == tarfile.REGTYPE:
            for block in _data(files, address, info.size):
                written += len(block)
                yield block
            pad = -info.size % tarfile.BLOCKSIZE
            written += pad
            yield bytes(pad)
    end = 2 * tarfile.BLOCKSIZE
    end += -(written + end) % tarfile.RECORDSIZE
    yield bytes(end)


class _Pipe:
    """A write-only sink the zip writer fills and the generator drains."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.offset = 0

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        self.offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self.offset

    def flush(self) -> None:
        return None

    def drain(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


def zip_stream(files: PointFiles, addresses: Sequence[Address]) -> Iterator[bytes]:
    """A zip archive (deflated, zip64) of the addresses; links and special files are left out."""
    pipe = _Pipe()
    with zipfile.ZipFile(pipe, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:  # type: ignore[arg-type]
        for rel, address, entry in members(files, addresses):
            stamp = time.gmtime(max(entry.mtime, 315532800))[:6]  # zip cannot say before 1980
            if entry.kind == DIRECTORY:
                info = zipfile.ZipInfo(rel + "/", stamp)
                info.external_attr = (stat.S_IFDIR | stat.S_IMODE(entry.mode)) << 16 | 0x10
                archive.writestr(info, b"")
            elif entry.kind == FILE:
                info = zipfile.ZipInfo(rel, stamp)
                info.external_attr = (stat.S_IFREG | stat.S_IMODE(entry.mode)) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                with archive.open(info, "w", force_zip64=True) as out:
                    for block in _data(files, address, entry.size):
                        out.write(block)
                        if pipe.parts:
                            yield pipe.drain()
            yield pipe.drain()
    yield pipe.drain()


def file_stream(files: PointFiles, address: Address) -> Iterator[bytes]:
    """One regular file's data, as it is."""
    entry = files.stat(address)
    if entry.kind != FILE:
        raise ImageFsError(f"{address} is a {entry.kind}; download it as tar or zip")
    yield from _data(files, address, entry.size)


def archive_stream(
    files: PointFiles, addresses: Sequence[Address], fmt: str = "tar"
) -> Iterator[bytes]:
    """The addresses as a ``tar`` or ``zip`` stream, or one regular file as is (``file``)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown archive format {fmt!r} (choose tar, zip or file)")
    if fmt == "file":
        if len(addresses) != 1:
            raise ValueError("a plain file download takes exactly one address")
        return file_stream(files, addresses[0])
    return tar_stream(files, addresses) if fmt == "tar" else zip_stream(files, addresses)
