"""Chunking: content-defined over a stream of writes, and fixed disk chunks."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tapir.appliance.datapath.chunker import (
    FILE_CHUNKER,
    ChunkerParams,
    StreamChunker,
    chunks_touched,
    disk_chunk_count,
    disk_chunk_span,
    is_zero,
    normalize_extents,
)
from tapir.appliance.plugin_api.items import Extent

TINY = ChunkerParams(min_size=64, avg_size=256, max_size=1024)


def chunk_all(data: bytes, cuts: list[int], params: ChunkerParams = TINY) -> list[bytes]:
    """Feed ``data`` split at ``cuts`` and return every chunk as bytes."""
    chunker = StreamChunker(params)
    out: list[bytes] = []
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        out += [bytes(c) for c in chunker.feed(data[start:cut])]
        start = max(start, cut)
    out += [bytes(c) for c in chunker.finish()]
    assert chunker.buffered == 0
    return out


@settings(max_examples=80, deadline=None)
@given(data=st.binary(max_size=12000), cuts=st.lists(st.integers(0, 12000), max_size=12))
def test_chunks_concatenate_to_input_within_bounds(data: bytes, cuts: list[int]) -> None:
    chunks = chunk_all(data, [c for c in cuts if c <= len(data)])
    assert b"".join(chunks) == data
    for chunk in chunks[:-1]:
        assert TINY.min_size <= len(chunk) <= TINY.max_size
    if chunks:
        assert 0 < len(chunks[-1]) <= TINY.max_size


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), cuts=st.lists(st.integers(0, 20000), max_size=20))
def test_cut_points_do_not_depend_on_write_sizes(seed: int, cuts: list[int]) -> None:
    data = random.Random(seed).randbytes(20000)
    assert chunk_all(data, cuts) == chunk_all(data, [])


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**32),
    old_prefix=st.binary(min_size=0, max_size=3000),
    new_prefix=st.binary(min_size=0, max_size=3000),
)
def test_boundaries_stable_when_a_prefix_changes(
    seed: int, old_prefix: bytes, new_prefix: bytes
) -> None:
    suffix = random.Random(seed).randbytes(64 * 1024)
    before = chunk_all(old_prefix + suffix, [])
    after = set(chunk_all(new_prefix + suffix, []))
    # Chunks wholly inside the unchanged suffix: nearly all must be shared.
    inside, offset = [], 0
    for chunk in before:
        if offset >= len(old_prefix):
            inside.append(chunk)
        offset += len(chunk)
    shared = sum(1 for chunk in inside if chunk in after)
    assert shared >= 0.9 * len(inside)


def test_large_immutable_writes_are_not_copied() -> None:
    chunker = StreamChunker(TINY, batch=4096)
    data = random.Random(1).randbytes(10000)
    chunks = list(chunker.feed(data))
    assert chunks and all(isinstance(c, memoryview) and c.readonly for c in chunks)
    assert all(c.obj is data for c in chunks)  # views of the caller's immutable bytes
    rest = chunker.finish()
    assert b"".join([*map(bytes, chunks), *map(bytes, rest)]) == data


def test_mutable_input_is_copied() -> None:
    chunker = StreamChunker(TINY, batch=4096)
    buf = bytearray(random.Random(2).randbytes(10000))
    chunks = [bytes(c) for c in chunker.feed(buf)] + [bytes(c) for c in chunker.finish()]
    original = bytes(buf)
    buf[:] = bytes(len(buf))  # the source reuses its buffer
    assert b"".join(chunks) == original


def test_default_file_chunk_sizes_and_bounds() -> None:
    assert FILE_CHUNKER.as_dict() == {"min": 512 * 1024, "avg": 1024 * 1024, "max": 8 * 1024**2}
    assert ChunkerParams.from_dict(FILE_CHUNKER.as_dict()) == FILE_CHUNKER
    data = random.Random(3).randbytes(24 * 1024 * 1024)
    chunker = StreamChunker(FILE_CHUNKER)
    sizes = []
    for start in range(0, len(data), 1 << 20):
        sizes += [len(c) for c in chunker.feed(data[start : start + (1 << 20)])]
    sizes += [len(c) for c in chunker.finish()]
    assert sum(sizes) == len(data)
    assert all(512 * 1024 <= s <= 8 * 1024**2 for s in sizes[:-1])
    assert 8 <= len(sizes) <= 24


def test_bad_params_are_refused() -> None:
    with pytest.raises(ValueError):
        ChunkerParams(min_size=2048, avg_size=1024, max_size=4096)


def test_disk_chunk_geometry() -> None:
    assert disk_chunk_count(0, 4) == 0
    assert disk_chunk_count(9, 4) == 3
    assert disk_chunk_span(2, 9, 4) == (8, 1)
    assert disk_chunk_span(1, 9, 4) == (4, 4)


def test_normalize_extents_sorts_and_merges() -> None:
    got = normalize_extents([Extent(10, 5), Extent(0, 3), Extent(12, 10), Extent(3, 0)], 100)
    assert got == [Extent(0, 3), Extent(10, 12)]
    assert normalize_extents([Extent(0, 3), Extent(3, 3)], 6) == [Extent(0, 6)]


@pytest.mark.parametrize("bad", [Extent(-1, 2), Extent(5, -1), Extent(90, 11)])
def test_normalize_extents_refuses_out_of_disk(bad: Extent) -> None:
    with pytest.raises(ValueError, match="outside the disk"):
        normalize_extents([bad], 100)


def test_chunks_touched_splits_at_chunk_boundaries() -> None:
    extents = [Extent(2, 3), Extent(6, 7), Extent(30, 1)]
    got = list(chunks_touched(extents, 4))
    assert got == [
        (0, [Extent(2, 2)]),
        (1, [Extent(4, 1), Extent(6, 2)]),
        (2, [Extent(8, 4)]),
        (3, [Extent(12, 1)]),
        (7, [Extent(30, 1)]),
    ]


def test_is_zero() -> None:
    assert is_zero(bytes(4096))
    assert is_zero(b"")
    assert not is_zero(bytes(4095) + b"\x01")


def test_huge_write_is_cut_one_batch_at_a_time() -> None:
    chunker = StreamChunker(TINY, batch=4096)
    list(chunker.feed(b"x" * 10))  # something pending: the zero-copy path is off
    data = random.Random(4).randbytes(100 * 4096)
    chunks = chunker.feed(data)
    first = next(chunks)
    assert chunker.buffered < 2 * 4096  # not the whole write at once
    rest = [bytes(first), *map(bytes, chunks), *map(bytes, chunker.finish())]
    assert b"".join(rest) == b"x" * 10 + data
