"""Pack files: chunks appended one after another, each framed so a pack describes itself.

The byte layout is specified in docs/format/disk-pool.md. In short (little endian)::

    file header   "TAPIRPAK" u32 version, 16-byte pack id, u32 crc32(header)
    entry         "TCHK", 32-byte chunk id, u32 length, u32 crc32(payload),
                  u32 crc32(entry header), then ``length`` payload bytes
    table         per entry: 32-byte chunk id, u64 entry offset, u32 length
    trailer       "TAPIREND", u32 entry count, u64 table offset,
                  u32 crc32(table + trailer fields)

The trailer and table let an index rebuild read a few bytes per pack; when they
are missing or damaged, :func:`scan_pack` walks the entry headers instead and
salvages every entry whose header is intact.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from .files import write_all, write_all_vectored

PACK_MAGIC = b"TAPIRPAK"
PACK_VERSION = 1
ENTRY_MAGIC = b"TCHK"
TRAILER_MAGIC = b"TAPIREND"
CHUNK_ID_SIZE = 32
PACK_ID_SIZE = 16
MAX_BLOB = 0xFFFFFFFF

_HEADER = struct.Struct("<8sI16s")  # + u32 crc
_ENTRY = struct.Struct("<4s32sII")  # + u32 crc of these 44 bytes
_TABLE_ROW = struct.Struct("<32sQI")
_TRAILER = struct.Struct("<8sIQ")  # + u32 crc of table + these 20 bytes
_CRC = struct.Struct("<I")

HEADER_SIZE = _HEADER.size + _CRC.size
ENTRY_HEADER_SIZE = _ENTRY.size + _CRC.size
TRAILER_SIZE = _TRAILER.size + _CRC.size


class PackEntryGone(Exception):
    """The pack file or the bytes of an entry are not there (deleted or truncated)."""


class PackDamaged(Exception):
    """The framing of a pack (header, entry header, table) does not check out."""


@dataclass(frozen=True, slots=True)
class PackEntry:
    """Where one chunk lies in a pack: ``offset`` of its entry header, payload ``length``."""

    chunk_id: bytes
    offset: int
    length: int


@dataclass
class PackScan:
    """What a walk over a pack's entry headers found."""

    entries: list[PackEntry] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def pack_name(pack_id: bytes) -> str:
    """The file name of a pack: its id in hex."""
    return f"{pack_id.hex()}.pack"


def encode_entry_header(chunk_id: bytes, blob: bytes | memoryview) -> bytes:
    """The framing written in front of a blob."""
    head = _ENTRY.pack(ENTRY_MAGIC, chunk_id, len(blob), zlib.crc32(blob))
    return head + _CRC.pack(zlib.crc32(head))


def _decode_entry_header(raw: bytes) -> tuple[bytes, int, int] | None:
    """(chunk id, length, payload crc) of an intact entry header, else None."""
    head, crc = raw[: _ENTRY.size], raw[_ENTRY.size : ENTRY_HEADER_SIZE]
    if len(crc) != _CRC.size or head[:4] != ENTRY_MAGIC:
        return None
    if zlib.crc32(head) != _CRC.unpack(crc)[0]:
        return None
    _, chunk_id, length, payload_crc = _ENTRY.unpack(head)
    return chunk_id, length, payload_crc


class PackWriter:
    """Appends entries to a new pack file; :meth:`finish` seals it with table and trailer.

    Not thread-safe: the write session serialises calls.
    """

    def __init__(self, path: Path, pack_id: bytes) -> None:
        self.path = path
        self.pack_id = pack_id
        self.entries: list[PackEntry] = []
        self.sealed = False  # table and trailer written
        # Guards the descriptor: a pack may be synced by one thread while a failing
        # session closes it from another.
        self._fd_lock = threading.Lock()
        self.synced = False  # fsynced and closed after sealing
        self._fd: int | None = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600
        )
        head = _HEADER.pack(PACK_MAGIC, PACK_VERSION, pack_id)
        self._write(head + _CRC.pack(zlib.crc32(head)))
        self.size = HEADER_SIZE

    def _write(self, data: bytes | memoryview) -> None:
        if self._fd is None:
            raise ValueError(f"pack {self.path} is already closed")
        write_all(self._fd, data)

    def append(
        self, chunk_id: bytes, blob: bytes | memoryview, header: bytes | None = None
    ) -> PackEntry:
        """Write one framed entry and return where it lies.

        ``header`` is :func:`encode_entry_header` of the same chunk, when the caller
        computed it already (outside its lock: the checksum reads the whole blob).
        """
        if header is None:
            header = encode_entry_header(chunk_id, blob)
        if self._fd is None:
            raise ValueError(f"pack {self.path} is already closed")
        entry = PackEntry(chunk_id, self.size, len(blob))
        # One (vectored) write for header and payload keeps a torn entry to a single
        # tail, without copying the blob behind its header.
        write_all_vectored(self._fd, header, blob)
        self.size += ENTRY_HEADER_SIZE + len(blob)
        self.entries.append(entry)
        return entry

    def finish(self) -> None:
        """Write the table and trailer, fsync and close: the pack is complete."""
        self.seal()
        self.sync()

    def seal(self) -> None:
        """Write the table and trailer; nothing can be appended afterwards.

        The pack is durable only after :meth:`sync`, which a writer may call without
        holding the lock that serialises appends.
        """
        table = b"".join(_TABLE_ROW.pack(e.chunk_id, e.offset, e.length) for e in self.entries)
        trailer = _TRAILER.pack(TRAILER_MAGIC, len(self.entries), self.size)
        crc = zlib.crc32(trailer, zlib.crc32(table))
        self._write(table + trailer + _CRC.pack(crc))
        self.size += len(table) + TRAILER_SIZE
        self.sealed = True

    def sync(self) -> None:
        """Fsync and close a sealed pack (a no-op once done). Thread-safe."""
        with self._fd_lock:
            if self.synced:
                return
            if not self.sealed or self._fd is None:
                raise ValueError(f"pack {self.path} is not sealed, or closed unsynced")
            os.fsync(self._fd)
            self.synced = True
            self._close()

    def close(self) -> None:
        """Close the file without sealing it (the caller discards it). Thread-safe."""
        with self._fd_lock:
            self._close()

    def _close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def _open_pack(path: Path) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise PackEntryGone(f"pack file {path} is gone") from None


def read_entry(
    path: Path, offset: int, chunk_id: bytes, length: int, check_payload: bool = False
) -> bytes:
    """The payload of the entry at ``offset``, checked against its framing.

    By default the payload is returned as stored, also when its checksum no longer
    matches: judging content is the repository's job, which reports it with the
    recovery points affected. ``check_payload`` (used when copying entries during
    a collection) raises PackDamaged instead, so damage is never re-sealed.
    """
    fd = _open_pack(path)
    try:
        want = ENTRY_HEADER_SIZE + length
        raw = os.pread(fd, want, offset)
        if len(raw) < want:
            size = os.fstat(fd).st_size
            raise PackEntryGone(
                f"pack {path} is truncated: the entry at offset {offset} needs {want} bytes "
                f"but the file ends at {size}"
            )
    finally:
        os.close(fd)
    header = _decode_entry_header(raw)
    if header is None:
        raise PackDamaged(
            f"pack {path}: the entry header at offset {offset} is damaged (bad magic or checksum)"
        )
    found_id, found_length, payload_crc = header
    if found_id != chunk_id or found_length != length:
        raise PackDamaged(
            f"pack {path}: offset {offset} holds chunk {found_id.hex()} of {found_length} "
            f"bytes, but the index expects chunk {chunk_id.hex()} of {length} bytes"
        )
    payload = raw[ENTRY_HEADER_SIZE:]
    if check_payload and zlib.crc32(payload) != payload_crc:
        raise PackDamaged(f"pack {path}: chunk {chunk_id.hex()} fails its payload checksum")
    return payload


def read_header(data: bytes | mmap.mmap, path: Path) -> bytes:
    """The pack id stored in a pack's file header; raises PackDamaged."""
    raw = bytes(data[:HEADER_SIZE])
    if len(raw) < HEADER_SIZE:
        raise PackDamaged(f"pack {path} is shorter than its file header")
    head, crc = raw[: _HEADER.size], raw[_HEADER.size :]
    magic, version, pack_id = _HEADER.unpack(head)
    if magic != PACK_MAGIC or zlib.crc32(head) != _CRC.unpack(crc)[0]:
        raise PackDamaged(f"pack {path}: the file header is damaged")
    if version != PACK_VERSION:
        raise PackDamaged(f"pack {path} has format version {version}; this plugin reads 1")
    return pack_id


def read_table(path: Path) -> list[PackEntry]:
    """The entries listed in a sealed pack's table (reads only the end of the file)."""
    fd = _open_pack(path)
    try:
        size = os.fstat(fd).st_size
        if size < HEADER_SIZE + TRAILER_SIZE:
            raise PackDamaged(f"pack {path} is too short ({size} bytes) to hold a trailer")
        read_header(os.pread(fd, HEADER_SIZE, 0), path)
        raw = os.pread(fd, TRAILER_SIZE, size - TRAILER_SIZE)
        magic, count, table_offset = _TRAILER.unpack(raw[: _TRAILER.size])
        table_size = count * _TABLE_ROW.size
        if magic != TRAILER_MAGIC or table_offset + table_size + TRAILER_SIZE != size:
            raise PackDamaged(f"pack {path} has no valid trailer (unsealed or truncated)")
        table = os.pread(fd, table_size, table_offset)
    finally:
        os.close(fd)
    if zlib.crc32(raw[: _TRAILER.size], zlib.crc32(table)) != _CRC.unpack(raw[_TRAILER.size :])[0]:
        raise PackDamaged(f"pack {path}: the entry table fails its checksum")
    entries = [PackEntry(*row) for row in _TABLE_ROW.iter_unpack(table)]
    end = HEADER_SIZE
    for e in entries:
        if e.offset < end or e.offset + ENTRY_HEADER_SIZE + e.length > table_offset:
            raise PackDamaged(f"pack {path}: the entry table lists an impossible offset")
        end = e.offset + ENTRY_HEADER_SIZE + e.length
    return entries


def _table_start(data: mmap.mmap) -> int | None:
    """Where the table begins, when the trailer is intact."""
    size = len(data)
    if size < HEADER_SIZE + TRAILER_SIZE:
        return None
    raw = data[size - TRAILER_SIZE :]
    magic, count, table_offset = _TRAILER.unpack(raw[: _TRAILER.size])
    if magic != TRAILER_MAGIC or table_offset + count * _TABLE_ROW.size + TRAILER_SIZE != size:
        return None
    table = data[table_offset : size - TRAILER_SIZE]
    if zlib.crc32(raw[: _TRAILER.size], zlib.crc32(table)) != _CRC.unpack(raw[_TRAILER.size :])[0]:
        return None
    return table_offset


def scan_pack(path: Path) -> PackScan:
    """Walk a pack's entry headers, checking every payload checksum too.

    Used when the table cannot be trusted and for deep checks. Damage does not stop
    the walk: it searches forward for the next intact entry header, so one torn
    entry loses only itself. Every irregularity is described in ``problems``.
    """
    result = PackScan()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            result.problems.append(f"pack {path} is empty")
            return result
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            try:
                read_header(data, path)
            except PackDamaged as exc:
                result.problems.append(str(exc))
            end = _table_start(data)
            if end is None:
                result.problems.append(f"pack {path} has no valid trailer (unsealed or truncated)")
                end = size
            pos = HEADER_SIZE
            while pos + ENTRY_HEADER_SIZE <= end:
                header = _decode_entry_header(data[pos : pos + ENTRY_HEADER_SIZE])
                if header is not None and pos + ENTRY_HEADER_SIZE + header[1] <= end:
                    chunk_id, length, payload_crc = header
                    start = pos + ENTRY_HEADER_SIZE
                    if zlib.crc32(data[start : start + length]) != payload_crc:
                        result.problems.append(
                            f"pack {path}: chunk {chunk_id.hex()} at offset {pos} "
                            "fails its payload checksum (kept; the repository will report it)"
                        )
                    result.entries.append(PackEntry(chunk_id, pos, length))
                    pos = start + length
                    continue
                what = "is cut short" if header is not None else "is damaged"
                following = data.find(ENTRY_MAGIC, pos + 1, end)
                while following != -1:
                    if _decode_entry_header(data[following : following + ENTRY_HEADER_SIZE]):
                        break
                    following = data.find(ENTRY_MAGIC, following + 1, end)
                skipped_to = end if following == -1 else following
                result.problems.append(
                    f"pack {path}: the entry at offset {pos} {what}; "
                    f"{skipped_to - pos} bytes skipped"
                )
                pos = skipped_to
            if pos < end:
                result.problems.append(
                    f"pack {path}: {end - pos} bytes after offset {pos} are a torn entry header"
                )
    return result
