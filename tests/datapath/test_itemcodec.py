"""Item records and the item stream."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tapir.appliance.datapath.chunker import ChunkerParams
from tapir.appliance.datapath.itemcodec import (
    ItemDecodeError,
    ItemStreamWriter,
    decode_item,
    encode_item,
    iter_item_stream,
)
from tapir.appliance.plugin_api.errors import TapirError
from tapir.appliance.plugin_api.items import ChunkRef, Item, ItemKind

ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
json_scalars = st.one_of(
    st.none(), st.booleans(), ints, st.text(max_size=20), st.binary(max_size=20)
)

items_strategy = st.builds(
    Item,
    path=st.binary(max_size=60),
    kind=st.sampled_from(list(ItemKind)),
    mode=st.integers(0, 0o177777),
    uid=st.integers(0, 2**32 - 1),
    gid=st.integers(0, 2**32 - 1),
    user=st.none() | st.text(max_size=12),
    group=st.none() | st.text(max_size=12),
    mtime_ns=ints,
    atime_ns=ints,
    ctime_ns=ints,
    size=st.integers(0, 2**50),
    target=st.none() | st.binary(max_size=40),
    rdev=st.integers(0, 2**32),
    xattrs=st.dictionaries(st.binary(max_size=16), st.binary(max_size=32), max_size=4),
    chunks=st.lists(
        st.builds(ChunkRef, st.none() | st.binary(min_size=32, max_size=32), st.integers(0, 2**40)),
        max_size=5,
    ),
    inode=st.integers(0, 2**63),
    device=st.integers(0, 2**63),
    flags=st.lists(st.text(max_size=20), max_size=3),
    extra=st.dictionaries(st.text(max_size=10), json_scalars, max_size=4),
)


@settings(max_examples=150, deadline=None)
@given(item=items_strategy)
def test_item_round_trip(item: Item) -> None:
    assert decode_item(encode_item(item)) == item


def test_defaults_are_omitted_and_bytes_stay_bytes() -> None:
    item = Item(path=b"dir/\xff\xfename", kind=ItemKind.DIRECTORY)
    record = msgpack.unpackb(encode_item(item), raw=False)
    assert record == {"p": b"dir/\xff\xfename", "k": "dir"}
    full = Item(
        path=b"a",
        kind=ItemKind.FILE,
        xattrs={b"user.\x80": b"\x00\x01"},
        chunks=[ChunkRef(b"\x01" * 32, 5), ChunkRef(None, 7)],
    )
    decoded = decode_item(encode_item(full))
    assert decoded.xattrs == {b"user.\x80": b"\x00\x01"}
    assert decoded.chunks == [ChunkRef(b"\x01" * 32, 5), ChunkRef(None, 7)]


def test_unknown_keys_are_tolerated() -> None:
    data = msgpack.packb({"p": b"x", "k": "file", "s": 3, "zz-new": [1, 2]}, use_bin_type=True)
    assert decode_item(data) == Item(path=b"x", kind=ItemKind.FILE, size=3)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"k": "file"}, "no path or kind"),
        ([1, 2], "no path or kind"),
        ({"p": b"x", "k": "teleporter"}, "unknown item kind 'teleporter'"),
        ({"p": b"x", "k": "file", "s": "big"}, "malformed item record"),
        ({"p": b"x", "k": "file", "c": [[b"id"]]}, "malformed item record"),
    ],
)
def test_malformed_records_raise(record: object, message: str) -> None:
    with pytest.raises(ItemDecodeError, match=message):
        decode_item(msgpack.packb(record, use_bin_type=True))


def test_garbage_bytes_raise() -> None:
    with pytest.raises(ItemDecodeError):
        decode_item(b"\xc1\xc1\xc1")


def test_unencodable_item_is_a_clear_error() -> None:
    with pytest.raises(TapirError, match="cannot be encoded"):
        encode_item(Item(path=b"x", kind=ItemKind.FILE, extra={"when": object()}))
    with pytest.raises(TapirError, match="path must be bytes"):
        encode_item(Item(path="x", kind=ItemKind.FILE))  # type: ignore[arg-type]


SMALL = ChunkerParams(min_size=64, avg_size=256, max_size=1024)


def write_stream(items: list[Item]) -> list[bytes]:
    chunks: list[bytes] = []
    writer = ItemStreamWriter(lambda c: chunks.append(bytes(c)), SMALL)
    for item in items:
        writer.add(item)
    writer.finish()
    assert writer.items == len(items)
    assert writer.bytes_logical == sum(i.size for i in items)
    return chunks


@settings(max_examples=40, deadline=None)
@given(items=st.lists(items_strategy, max_size=30))
def test_item_stream_round_trip(items: list[Item]) -> None:
    assert list(iter_item_stream(write_stream(items))) == items


def test_item_stream_is_cut_into_chunks_and_decoded_lazily() -> None:
    items = [Item(path=b"dir/file%05d" % i, kind=ItemKind.FILE, size=i) for i in range(2000)]
    chunks = write_stream(items)
    assert len(chunks) > 10
    consumed: list[int] = []

    def feed():
        for index, chunk in enumerate(chunks):
            consumed.append(index)
            yield chunk

    stream = iter_item_stream(feed())
    assert next(stream).path == b"dir/file00000"
    assert consumed == [0]  # only the first chunk was needed
    assert [i.path for i in stream] == [i.path for i in items[1:]]


def test_unchanged_tree_gives_identical_stream_chunks() -> None:
    items = [Item(path=b"f%05d" % i, kind=ItemKind.FILE, size=i) for i in range(3000)]
    first = write_stream(items)
    items[1500].size += 1  # one change in the middle
    second = write_stream(items)
    shared = set(first) & set(second)
    assert len(shared) >= len(first) - 3


def test_truncated_stream_is_detected() -> None:
    chunks = write_stream([Item(path=b"x" * 500, kind=ItemKind.FILE)] * 20)
    joined = b"".join(chunks)
    with pytest.raises(ItemDecodeError, match="ends inside a record"):
        list(iter_item_stream([joined[:-5]]))
