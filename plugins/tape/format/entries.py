"""Entries of chunk archives and manifest archives, after the file header.

Chunk entry:    chunk id (32 bytes) | blob length (u32, big-endian) | sealed blob
Manifest entry: name length (u16) | name (UTF-8) | blob length (u32) | blob

An entry never spans two volumes: an archive is cut between entries.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from .errors import BadEntry

CHUNK_ID_SIZE = 32
MAX_BLOB_SIZE = 256 * 1024 * 1024
MAX_NAME_SIZE = 1024
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")


@dataclass(frozen=True)
class ChunkEntry:
    """One chunk of a chunk archive; ``offset`` is where the entry starts in the stream."""

    chunk_id: bytes
    blob: bytes
    offset: int


@dataclass(frozen=True)
class ManifestEntry:
    """One recovery point manifest of a manifest archive."""

    name: str
    blob: bytes
    offset: int


def chunk_entry_head(chunk_id: bytes, blob_length: int) -> bytes:
    """The bytes that precede a chunk's blob; ValueError on a bad id or length."""
    if not isinstance(chunk_id, bytes | bytearray) or len(chunk_id) != CHUNK_ID_SIZE:
        raise ValueError(f"a chunk id is {CHUNK_ID_SIZE} bytes")
    if not 0 < blob_length <= MAX_BLOB_SIZE:
        raise ValueError(f"sealed blob length {blob_length} outside 1..{MAX_BLOB_SIZE}")
    return bytes(chunk_id) + _U32.pack(blob_length)


def manifest_entry_head(name: str, blob_length: int) -> bytes:
    """The bytes that precede a manifest's blob; ValueError on a bad name or length."""
    encoded = name.encode("utf-8") if isinstance(name, str) else b""
    if not encoded or len(encoded) > MAX_NAME_SIZE:
        raise ValueError(f"a manifest name is 1..{MAX_NAME_SIZE} bytes of UTF-8 text")
    if not 0 < blob_length <= MAX_BLOB_SIZE:
        raise ValueError(f"manifest blob length {blob_length} outside 1..{MAX_BLOB_SIZE}")
    return _U16.pack(len(encoded)) + encoded + _U32.pack(blob_length)


ReadExact = Callable[[int], bytes]
"""Reads exactly n bytes of the stream; raises BadEntry when it ends first."""


def read_chunk_entry(read_exact: ReadExact, offset: int) -> ChunkEntry:
    """Read one chunk entry whose first byte is already known to exist."""
    head = read_exact(CHUNK_ID_SIZE + _U32.size)
    (length,) = _U32.unpack_from(head, CHUNK_ID_SIZE)
    if not 0 < length <= MAX_BLOB_SIZE:
        raise BadEntry(f"chunk entry at offset {offset}: blob length {length} is impossible")
    return ChunkEntry(chunk_id=head[:CHUNK_ID_SIZE], blob=read_exact(length), offset=offset)


def read_manifest_entry(read_exact: ReadExact, offset: int) -> ManifestEntry:
    """Read one manifest entry whose first byte is already known to exist."""
    (name_length,) = _U16.unpack(read_exact(_U16.size))
    if not 0 < name_length <= MAX_NAME_SIZE:
        raise BadEntry(f"manifest entry at offset {offset}: name length {name_length}")
    try:
        name = read_exact(name_length).decode("utf-8")
    except UnicodeDecodeError:
        raise BadEntry(f"manifest entry at offset {offset}: name is not UTF-8") from None
    (length,) = _U32.unpack(read_exact(_U32.size))
    if not 0 < length <= MAX_BLOB_SIZE:
        raise BadEntry(f"manifest {name!r}: blob length {length} is impossible")
    return ManifestEntry(name=name, blob=read_exact(length), offset=offset)
