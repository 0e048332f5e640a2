"""Tape blocks: round trips, every single-bit corruption caught, clear errors on bad blocks."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tapir.plugins.tape.format import (
    HEADER_SIZE,
    MIN_BLOCK_SIZE,
    BadBlock,
    BadChecksum,
    BadMagic,
    BlockFlags,
    SequenceGap,
    TapeFormatError,
    UnsupportedVersion,
    decode_block,
    encode_block,
    payload_capacity,
)
from tapir.plugins.tape.format.blocks import CHECKSUM_OFFSET, _checksum

FLAG_SETS = [
    BlockFlags.NONE,
    BlockFlags.END_OF_STREAM,
    BlockFlags.END_OF_STREAM | BlockFlags.CONTINUES_ON_NEXT,
    BlockFlags.CONTINUED_FROM_PREVIOUS,
    BlockFlags.CONTINUED_FROM_PREVIOUS | BlockFlags.END_OF_STREAM,
    BlockFlags.CONTINUED_FROM_PREVIOUS | BlockFlags.END_OF_STREAM | BlockFlags.CONTINUES_ON_NEXT,
]


@st.composite
def blocks(draw: st.DrawFn) -> tuple[int, int, bytes, BlockFlags]:
    size = draw(st.sampled_from([MIN_BLOCK_SIZE, 8192, 65536, 256 * 1024]))
    payload = draw(st.binary(max_size=min(payload_capacity(size), 5000)))
    if draw(st.booleans()):
        payload = payload.ljust(payload_capacity(size), b"\xa5")  # a full block
    sequence = draw(st.integers(min_value=0, max_value=(1 << 64) - 1))
    return size, sequence, payload, draw(st.sampled_from(FLAG_SETS))


@settings(max_examples=150, deadline=None)
@given(blocks())
def test_round_trip(case: tuple[int, int, bytes, BlockFlags]) -> None:
    size, sequence, payload, flags = case
    raw = encode_block(sequence, payload, size, flags)
    assert len(raw) == size
    block = decode_block(raw, expect_sequence=sequence)
    assert (block.sequence, block.flags, block.payload, block.block_size) == (
        sequence,
        flags,
        payload,
        size,
    )
    assert block.end_of_stream == bool(flags & BlockFlags.END_OF_STREAM)


def test_every_single_bit_flip_is_detected() -> None:
    raw = encode_block(7, bytes(range(256)) * 9, MIN_BLOCK_SIZE, BlockFlags.END_OF_STREAM)
    buf = bytearray(raw)
    for bit in range(len(raw) * 8):
        buf[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(TapeFormatError):
            decode_block(buf, expect_sequence=7)
        buf[bit // 8] ^= 1 << (bit % 8)
    assert decode_block(buf).payload == bytes(range(256)) * 9  # the original still reads


def test_padding_is_covered_by_the_checksum() -> None:
    raw = bytearray(encode_block(0, b"short", MIN_BLOCK_SIZE))
    raw[-1] = 1
    with pytest.raises(BadChecksum, match="damaged"):
        decode_block(raw)


def test_bad_magic_and_version_are_named() -> None:
    raw = bytearray(encode_block(0, b"x", MIN_BLOCK_SIZE))
    with pytest.raises(BadMagic, match="not a Tapir tape block"):
        decode_block(b"\x00" * MIN_BLOCK_SIZE)
    raw[4] = 2
    with pytest.raises(UnsupportedVersion, match="version 2"):
        decode_block(raw)


def test_sequence_gap() -> None:
    raw = encode_block(5, b"x", MIN_BLOCK_SIZE)
    with pytest.raises(SequenceGap, match="sequence 5 where 4 was expected"):
        decode_block(raw, expect_sequence=4)


def _resealed(raw: bytes, offset: int, fmt: str, value: int) -> bytes:
    """A block with one field changed and a valid checksum (a buggy writer, not damage)."""
    buf = bytearray(raw)
    struct.pack_into(fmt, buf, offset, value)
    buf[CHECKSUM_OFFSET:HEADER_SIZE] = _checksum(buf)
    return bytes(buf)


def test_impossible_fields_under_a_valid_checksum() -> None:
    raw = encode_block(0, b"abc", MIN_BLOCK_SIZE)
    with pytest.raises(BadBlock, match="payload length"):
        decode_block(_resealed(raw, 12, ">I", MIN_BLOCK_SIZE))
    with pytest.raises(BadBlock, match="header says"):
        decode_block(_resealed(raw, 8, ">I", 8192))
    with pytest.raises(BadBlock, match="unknown flags"):
        decode_block(_resealed(raw, 5, ">B", 0x80))
    with pytest.raises(BadBlock, match="continues-on-next without end-of-stream"):
        decode_block(_resealed(raw, 5, ">B", int(BlockFlags.CONTINUES_ON_NEXT)))
    with pytest.raises(BadBlock, match="shorter than its"):
        decode_block(raw[:20])
    with pytest.raises(BadBlock, match="header says"):
        decode_block(raw[:-1])


def test_encode_refuses_what_cannot_be_read_back() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        encode_block(0, bytes(payload_capacity(MIN_BLOCK_SIZE) + 1), MIN_BLOCK_SIZE)
    with pytest.raises(ValueError, match="block size"):
        encode_block(0, b"", 1000)
    with pytest.raises(ValueError, match="sequence number"):
        encode_block(-1, b"", MIN_BLOCK_SIZE)
    with pytest.raises(ValueError, match="only valid on the end-of-stream"):
        encode_block(0, b"", MIN_BLOCK_SIZE, BlockFlags.CONTINUES_ON_NEXT)
