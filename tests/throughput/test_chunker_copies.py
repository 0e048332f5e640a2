"""The stream chunker's large-write path: same cut points, views instead of copies."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from tapir.appliance.datapath.chunker import ChunkerParams, StreamChunker

TINY = ChunkerParams(min_size=64, avg_size=256, max_size=1024)


def reference(data: bytes, params: ChunkerParams = TINY) -> list[bytes]:
    """Chunks of ``data`` given in one piece and cut at the end of the stream."""
    chunker = StreamChunker(params, batch=len(data) + 1)
    out = [bytes(c) for c in chunker.feed(data)]
    return out + [bytes(c) for c in chunker.finish()]


def chunk_pieces(pieces: list[bytes | bytearray], params: ChunkerParams = TINY) -> list[bytes]:
    chunker = StreamChunker(params)
    out: list[bytes] = []
    for piece in pieces:
        out += [bytes(c) for c in chunker.feed(piece)]
    out += [bytes(c) for c in chunker.finish()]
    assert chunker.buffered == 0
    return out


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    sizes=st.lists(st.sampled_from([0, 1, 63, 700, 1023, 1024, 1025, 3000, 9000]), max_size=25),
    mutable=st.lists(st.booleans(), max_size=25),
)
def test_any_mix_of_small_and_large_writes_cuts_like_one_write(
    seed: int, sizes: list[int], mutable: list[bool]
) -> None:
    rng = random.Random(seed)
    pieces: list[bytes | bytearray] = []
    for i, size in enumerate(sizes):
        data = rng.randbytes(size)
        pieces.append(bytearray(data) if i < len(mutable) and mutable[i] else data)
    whole = b"".join(pieces)
    assert chunk_pieces(pieces) == reference(whole)


def test_low_entropy_data_is_cut_at_max_size_across_writes() -> None:
    # No content cut points: every chunk is forced at max_size, also across writes.
    pieces = [bytes(100), bytes(5000), bytes(1500), bytes(3000)]
    chunks = chunk_pieces(pieces)
    assert b"".join(chunks) == b"".join(pieces)
    assert chunks == reference(b"".join(pieces))
    assert all(len(c) == TINY.max_size for c in chunks[:-1])


def test_large_write_after_a_tail_copies_only_the_spanning_chunk() -> None:
    chunker = StreamChunker(TINY)
    first = random.Random(1).randbytes(300)
    assert list(chunker.feed(first)) == []  # pending, below a batch
    second = random.Random(2).randbytes(20_000)
    chunks = list(chunker.feed(second))
    rest = chunker.finish()
    assert b"".join(map(bytes, [*chunks, *rest])) == first + second
    copies = [c for c in chunks if not (isinstance(c, memoryview) and c.obj in (first, second))]
    # Everything but the chunk that spans the two writes is a view of the caller's bytes.
    assert len(copies) == 1
    assert len(chunks) > 10
    assert all(c.readonly for c in chunks if isinstance(c, memoryview))


def test_mutable_large_write_is_copied_before_the_caller_reuses_it() -> None:
    chunker = StreamChunker(TINY)
    buf = bytearray(random.Random(3).randbytes(10_000))
    original = bytes(buf)
    chunks = list(chunker.feed(buf))
    buf[:] = bytes(len(buf))  # the source reuses its buffer before the chunks are stored
    rest = chunker.finish()
    assert b"".join(map(bytes, [*chunks, *rest])) == original
