"""Items as msgpack records, and the item stream of a recovery point.

An item record is a msgpack map with short keys (see ``_FIELDS`` and the format
document). Fields holding their default value are left out. Paths, link targets and
extended attributes stay bytes (msgpack bin); names are str. Unknown keys are ignored,
so a newer Tapir can add fields that an older one still reads past.

The item stream is the concatenation of the records in stored order. It is cut into
content-defined chunks and stored like file data (:class:`ItemStreamWriter`); readers
decode it lazily, chunk by chunk (:func:`iter_item_stream`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import msgpack

from ..plugin_api.errors import TapirError
from ..plugin_api.items import ChunkRef, Item, ItemKind
from .chunker import ITEM_STREAM_CHUNKER, ChunkerParams, StreamChunker

# Item attribute -> record key. Keys are part of the on-medium format: never reuse one.
_FIELDS: dict[str, str] = {
    "path": "p",
    "kind": "k",
    "mode": "m",
    "uid": "u",
    "gid": "g",
    "user": "U",
    "group": "G",
    "mtime_ns": "mt",
    "atime_ns": "at",
    "ctime_ns": "ct",
    "size": "s",
    "target": "t",
    "rdev": "r",
    "xattrs": "x",
    "chunks": "c",
    "inode": "i",
    "device": "d",
    "flags": "f",
    "extra": "e",
}
_INT_FIELDS = ("mode", "uid", "gid", "mtime_ns", "atime_ns", "ctime_ns", "size", "rdev")
_INT_FIELDS += ("inode", "device")

_packer_options: dict[str, Any] = {"use_bin_type": True, "datetime": False}


class ItemDecodeError(TapirError):
    """An item record could not be decoded (damaged stream or unknown item kind)."""


def item_to_record(item: Item) -> dict[str, Any]:
    """The record (a plain dict with short keys) of ``item``."""
    if not isinstance(item.path, bytes):
        raise TapirError(f"item path must be bytes, got {type(item.path).__name__}")
    record: dict[str, Any] = {"p": item.path, "k": str(ItemKind(item.kind))}
    for name in _INT_FIELDS:
        value = getattr(item, name)
        if value:
            record[_FIELDS[name]] = int(value)
    for name in ("user", "group", "target"):
        value = getattr(item, name)
        if value is not None:
            record[_FIELDS[name]] = value
    if item.xattrs:
        record["x"] = {bytes(k): bytes(v) for k, v in item.xattrs.items()}
    if item.chunks:
        record["c"] = [[ref.id, ref.length] for ref in item.chunks]
    if item.flags:
        record["f"] = list(item.flags)
    if item.extra:
        record["e"] = dict(item.extra)
    return record


def record_to_item(record: Any) -> Item:
    """Rebuild an item from a decoded record; unknown keys are ignored."""
    if not isinstance(record, dict) or "p" not in record or "k" not in record:
        raise ItemDecodeError("malformed item record (no path or kind)")
    try:
        kind = ItemKind(record["k"])
    except ValueError:
        raise ItemDecodeError(
            f"unknown item kind {record['k']!r} (written by a newer Tapir?)"
        ) from None
    try:
        item = Item(path=bytes(record["p"]), kind=kind)
        for name in _INT_FIELDS:
            value = record.get(_FIELDS[name])
            if value is not None:
                setattr(item, name, int(value))
        for name in ("user", "group"):
            value = record.get(_FIELDS[name])
            if value is not None:
                setattr(item, name, str(value))
        if record.get("t") is not None:
            item.target = bytes(record["t"])
        if record.get("x"):
            item.xattrs = {bytes(k): bytes(v) for k, v in record["x"].items()}
        if record.get("c"):
            item.chunks = [
                ChunkRef(None if cid is None else bytes(cid), int(length))
                for cid, length in record["c"]
            ]
        if record.get("f"):
            item.flags = [str(f) for f in record["f"]]
        if record.get("e"):
            item.extra = dict(record["e"])
    except (TypeError, ValueError, AttributeError) as exc:
        raise ItemDecodeError(f"malformed item record: {exc}") from None
    return item


def encode_item(item: Item) -> bytes:
    """One item as a msgpack record."""
    try:
        return msgpack.packb(item_to_record(item), **_packer_options)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TapirError(f"item {item.path!r} cannot be encoded: {exc}") from None


def decode_item(data: bytes) -> Item:
    """Reverse :func:`encode_item`."""
    try:
        record = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise ItemDecodeError(f"malformed item record: {exc}") from None
    return record_to_item(record)


def new_unpacker() -> msgpack.Unpacker:
    """An incremental decoder configured for item records."""
    return msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=2**31 - 1)


def iter_item_stream(chunks: Iterable[bytes]) -> Iterator[Item]:
    """Decode items lazily from the stream's chunks (plain data, in order)."""
    unpacker = new_unpacker()
    fed = complete = 0
    for data in chunks:
        unpacker.feed(data)
        fed += len(data)
        try:
            for record in unpacker:
                # tell() is exact only right after a whole record was decoded.
                complete = unpacker.tell()
                yield record_to_item(record)
        except (ValueError, msgpack.UnpackException) as exc:
            raise ItemDecodeError(f"damaged item stream: {exc}") from None
    if complete != fed:
        raise ItemDecodeError("item stream ends inside a record")


class ItemStreamWriter:
    """Encodes items in order and hands the stream's chunks to ``store_chunk``.

    ``store_chunk`` receives each chunk's plain data; the caller keeps the ids.
    """

    def __init__(
        self,
        store_chunk: Callable[[bytes | memoryview], None],
        params: ChunkerParams = ITEM_STREAM_CHUNKER,
    ) -> None:
        self._store = store_chunk
        self._chunker = StreamChunker(params, batch=2 * params.max_size)
        self.items = 0
        self.bytes_logical = 0

    def add(self, item: Item) -> None:
        """Append one item record."""
        record = encode_item(item)
        self.items += 1
        self.bytes_logical += item.size
        for chunk in self._chunker.feed(record):
            self._store(chunk)

    def finish(self) -> None:
        """Flush the last chunks."""
        for chunk in self._chunker.finish():
            self._store(chunk)
