"""Fixed-size tape blocks: a 40-byte header, the payload, zero padding.

Every block of a tape file has the same size (the volume's block size). The
header says which stream position the block holds (sequence number), how much
of it is payload, and how the stream ends; a BLAKE3 checksum covers every byte
of the block except the checksum field itself, padding included.

Why BLAKE3 truncated to 16 bytes rather than CRC32C: BLAKE3 is already the
hash of chunk ids (no new dependency), it runs at several GB/s with SIMD, and a
128-bit check leaves a practical zero chance that damage goes unnoticed. CRC32C
guarantees to catch short bursts but misses one random corruption in 2**32,
which is not negligible across the billions of blocks of a large tape library.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntFlag

from blake3 import blake3

from .errors import BadBlock, BadChecksum, BadMagic, SequenceGap, UnsupportedVersion

MAGIC = b"TPBK"
BLOCK_VERSION = 1
HEADER_SIZE = 40
CHECKSUM_OFFSET = 24
CHECKSUM_SIZE = 16
DEFAULT_BLOCK_SIZE = 256 * 1024
MIN_BLOCK_SIZE = 4096
MAX_BLOCK_SIZE = 8 * 1024 * 1024

# magic, version, flags, reserved, block size, payload length, sequence
_FIELDS = struct.Struct(">4sBBHIIQ")
assert _FIELDS.size == CHECKSUM_OFFSET


class BlockFlags(IntFlag):
    """How a block relates to the end of its tape file and to other volumes."""

    NONE = 0
    END_OF_STREAM = 0x01
    """The last block of the tape file: the stream is whole when this is read."""
    CONTINUES_ON_NEXT = 0x02
    """Only with END_OF_STREAM: the archive goes on in a tape file on the next volume."""
    CONTINUED_FROM_PREVIOUS = 0x04
    """On every block of a part that continues an archive from the previous volume."""


KNOWN_FLAGS = (
    BlockFlags.END_OF_STREAM | BlockFlags.CONTINUES_ON_NEXT | BlockFlags.CONTINUED_FROM_PREVIOUS
)


def check_block_size(block_size: int) -> int:
    """Return ``block_size`` when the format allows it; ValueError otherwise."""
    if not MIN_BLOCK_SIZE <= block_size <= MAX_BLOCK_SIZE:
        raise ValueError(
            f"block size {block_size} outside {MIN_BLOCK_SIZE}..{MAX_BLOCK_SIZE} bytes"
        )
    return block_size


def payload_capacity(block_size: int) -> int:
    """Payload bytes one block of ``block_size`` bytes carries."""
    return block_size - HEADER_SIZE


@dataclass(frozen=True)
class Block:
    """A decoded block: its place in the stream, its flags and its payload."""

    sequence: int
    flags: BlockFlags
    payload: bytes
    block_size: int

    @property
    def end_of_stream(self) -> bool:
        """The last block of its tape file."""
        return bool(self.flags & BlockFlags.END_OF_STREAM)


def _checksum(block: bytes | bytearray | memoryview) -> bytes:
    view = memoryview(block)
    h = blake3(view[:CHECKSUM_OFFSET])
    h.update(view[HEADER_SIZE:])
    return h.digest(CHECKSUM_SIZE)


def encode_block(
    sequence: int,
    payload: bytes | bytearray | memoryview,
    block_size: int = DEFAULT_BLOCK_SIZE,
    flags: BlockFlags = BlockFlags.NONE,
) -> bytes:
    """One block of exactly ``block_size`` bytes carrying ``payload``.

    Raises ValueError for a payload that does not fit, a bad block size, a
    negative sequence number or CONTINUES_ON_NEXT without END_OF_STREAM.
    """
    check_block_size(block_size)
    size = len(payload)
    if size > payload_capacity(block_size):
        raise ValueError(f"{size} payload bytes do not fit a {block_size}-byte block")
    if not 0 <= sequence < 1 << 64:
        raise ValueError(f"sequence number {sequence} out of range")
    flags = BlockFlags(flags)
    if flags & ~KNOWN_FLAGS:
        raise ValueError(f"unknown block flags {int(flags):#x}")
    if flags & BlockFlags.CONTINUES_ON_NEXT and not flags & BlockFlags.END_OF_STREAM:
        raise ValueError("CONTINUES_ON_NEXT is only valid on the end-of-stream block")
    out = bytearray(block_size)
    _FIELDS.pack_into(out, 0, MAGIC, BLOCK_VERSION, int(flags), 0, block_size, size, sequence)
    out[HEADER_SIZE : HEADER_SIZE + size] = payload
    out[CHECKSUM_OFFSET:HEADER_SIZE] = _checksum(out)
    return bytes(out)


def decode_block(raw: bytes | bytearray | memoryview, expect_sequence: int | None = None) -> Block:
    """Verify and decode one block as read from tape.

    Raises BadMagic, UnsupportedVersion, BadBlock (impossible sizes or flags),
    BadChecksum, or SequenceGap when ``expect_sequence`` is given and differs.
    The checksum is verified before any field other than magic, version and
    block size (compared with what was read) is trusted, so a damaged length
    never reads out of bounds.
    """
    view = memoryview(raw)
    if len(view) < HEADER_SIZE:
        raise BadBlock(f"block of {len(view)} bytes is shorter than its {HEADER_SIZE}-byte header")
    magic, version, flags, reserved, block_size, size, sequence = _FIELDS.unpack_from(view, 0)
    if magic != MAGIC:
        raise BadMagic(f"not a Tapir tape block (magic {bytes(magic)!r}, expected {MAGIC!r})")
    if version != BLOCK_VERSION:
        raise UnsupportedVersion(f"block format version {version} (this reader knows 1)")
    if block_size != len(view):
        raise BadBlock(f"block {sequence}: header says {block_size} bytes, read {len(view)}")
    if bytes(view[CHECKSUM_OFFSET:HEADER_SIZE]) != _checksum(view):
        raise BadChecksum(f"block {sequence}: checksum mismatch, the block is damaged")
    if not MIN_BLOCK_SIZE <= block_size <= MAX_BLOCK_SIZE:
        raise BadBlock(f"block {sequence}: block size {block_size} outside the format's range")
    if size > block_size - HEADER_SIZE:
        raise BadBlock(f"block {sequence}: payload length {size} exceeds the block")
    if reserved or flags & ~int(KNOWN_FLAGS):
        raise BadBlock(f"block {sequence}: unknown flags {flags:#x} or reserved bits set")
    block_flags = BlockFlags(flags)
    if block_flags & BlockFlags.CONTINUES_ON_NEXT and not block_flags & BlockFlags.END_OF_STREAM:
        raise BadBlock(f"block {sequence}: continues-on-next without end-of-stream")
    if expect_sequence is not None and sequence != expect_sequence:
        raise SequenceGap(f"block sequence {sequence} where {expect_sequence} was expected")
    payload = bytes(view[HEADER_SIZE : HEADER_SIZE + size])
    return Block(sequence=sequence, flags=block_flags, payload=payload, block_size=block_size)
