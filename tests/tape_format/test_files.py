"""Tape file headers, catalog records and media set reconstruction, without a drive."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tapir.plugins.tape.format import (
    BadHeader,
    CatalogHeader,
    CatalogRecord,
    ChunkArchiveHeader,
    ContinuationMismatch,
    FileKind,
    ManifestArchiveHeader,
    MediaLabel,
    MediaSetLabel,
    UnsupportedVersion,
    VolumeCatalog,
    build_index,
    decode_header,
    new_uuid,
)
from tapir.plugins.tape.format.catalog import decode_records

uuids = st.uuids().map(lambda u: u.hex)
seqs = st.integers(min_value=0, max_value=(1 << 63))
texts = st.text(min_size=1, max_size=40)


@st.composite
def headers(draw: st.DrawFn):  # type: ignore[no-untyped-def]
    kind = draw(st.sampled_from(list(FileKind)))
    ms, seq, when = draw(uuids), draw(seqs), draw(texts)
    if kind == FileKind.MEDIA_LABEL:
        return MediaLabel(
            None, None, draw(texts), draw(uuids), draw(st.none() | texts), when, draw(seqs)
        )
    if kind == FileKind.MEDIA_SET_LABEL:
        fingerprint = draw(st.none() | texts)
        return MediaSetLabel(ms, seq, draw(uuids), draw(texts), draw(texts), fingerprint, when)
    if kind == FileKind.CATALOG:
        return CatalogHeader(ms, seq, draw(uuids), draw(uuids), draw(seqs), when)
    cls = ChunkArchiveHeader if kind == FileKind.CHUNK_ARCHIVE else ManifestArchiveHeader
    return cls(ms, seq, draw(uuids), draw(seqs), draw(uuids), draw(seqs), when)


@settings(max_examples=200, deadline=None)
@given(headers(), st.binary(max_size=64))
def test_header_round_trip(header, trailing: bytes) -> None:  # type: ignore[no-untyped-def]
    record = header.encode()
    decoded, used = decode_header(record + trailing)
    assert decoded == header and type(decoded) is type(header)
    assert used == len(record)


def _record(body: dict) -> bytes:
    packed = msgpack.packb(body, use_bin_type=True)
    return len(packed).to_bytes(4, "big") + packed


def test_bad_headers_are_refused_clearly() -> None:
    good = ChunkArchiveHeader(new_uuid(), 0, new_uuid(), 0, new_uuid(), 0, "now").to_map()
    with pytest.raises(BadHeader, match="not a Tapir tape file header"):
        decode_header(_record({**good, "format": "other"}))
    with pytest.raises(UnsupportedVersion, match="version 9"):
        decode_header(_record({**good, "version": 9}))
    with pytest.raises(BadHeader, match="unknown tape file kind"):
        decode_header(_record({**good, "kind": "mystery"}))
    with pytest.raises(BadHeader, match="lacks archive"):
        decode_header(_record({k: v for k, v in good.items() if k != "archive"}))
    with pytest.raises(BadHeader, match="part must be a non-negative integer"):
        decode_header(_record({**good, "part": "1"}))
    with pytest.raises(BadHeader, match="media_set must be a UUID"):
        decode_header(_record({**good, "media_set": "not-a-uuid"}))
    with pytest.raises(BadHeader, match="not a map"):
        decode_header(_record([1, 2]))  # type: ignore[arg-type]
    with pytest.raises(BadHeader, match="not valid msgpack"):
        decode_header(b"\x00\x00\x00\x01\xc1")
    with pytest.raises(BadHeader, match="cut short"):
        decode_header(_record(good)[:-3])
    with pytest.raises(BadHeader, match="claims"):
        decode_header(b"\xff\xff\xff\xff")
    # Unknown keys are tolerated: a later revision may add some.
    assert decode_header(_record({**good, "future": 1}))[0].archive == good["archive"]


def test_headers_refuse_bad_values_when_built() -> None:
    with pytest.raises(ValueError, match="belongs to no media set"):
        MediaLabel(new_uuid(), None, "TAP001L8", new_uuid(), "pool", "now", 262144)
    with pytest.raises(ValueError, match="volume_seq"):
        MediaSetLabel(new_uuid(), -1, new_uuid(), "pool", "now", None, "now")
    head = ChunkArchiveHeader(new_uuid(), 3, new_uuid(), 0, new_uuid(), 0, "now")
    nxt = head.next_part(4)
    assert (nxt.part, nxt.volume_seq, nxt.archive, nxt.continued) == (1, 4, head.archive, True)
    with pytest.raises(ValueError, match="later volume"):
        head.next_part(3)


def _catalog(media_set: str, seq: int, records: list[CatalogRecord]) -> VolumeCatalog:
    header = CatalogHeader(media_set, seq, new_uuid(), new_uuid(), 99, "now")
    return VolumeCatalog(header, records)


def test_catalog_records_round_trip_and_reject_disorder() -> None:
    cid = bytes(range(32))
    records = [
        CatalogRecord(0, FileKind.MEDIA_LABEL),
        CatalogRecord(1, FileKind.MEDIA_SET_LABEL),
        CatalogRecord(2, FileKind.CHUNK_ARCHIVE, new_uuid(), 0, new_uuid(), 0, True, [(cid, 4)]),
        CatalogRecord(
            3, FileKind.MANIFEST_ARCHIVE, new_uuid(), 0, new_uuid(), 1, False, [], [("rp", 9)]
        ),
    ]
    header = CatalogHeader(new_uuid(), 0, new_uuid(), new_uuid(), 4, "now")
    stream = b"".join(r.encode() for r in records)
    pieces = [stream[i : i + 7] for i in range(0, len(stream), 7)]  # records cross blocks
    assert list(decode_records(pieces, header)) == records
    with pytest.raises(BadHeader, match="out of order"):
        list(decode_records([records[1].encode() + records[0].encode()], header))
    with pytest.raises(BadHeader, match="ends inside a record"):
        list(decode_records([stream[:-2]], header))
    bad = {**records[2].to_map(), "chunks": [[b"short", 1]]}
    with pytest.raises(BadHeader, match="not 32 bytes"):
        list(decode_records([msgpack.packb(bad)], header))


def test_media_set_index_joins_parts_in_order() -> None:
    ms, archive, session = new_uuid(), new_uuid(), new_uuid()
    a, b = bytes(32), bytes([1]) * 32

    def part(file: int, n: int, continues: bool, chunks: list) -> CatalogRecord:
        return CatalogRecord(
            file, FileKind.CHUNK_ARCHIVE, archive, n, session, 0, continues, chunks
        )

    first = _catalog(ms, 0, [part(2, 0, True, [(a, 10)])])
    second = _catalog(ms, 1, [part(2, 1, False, [(b, 10)])])
    index = build_index([second, first])  # any order
    assert [p.part for p in index.archives[archive]] == [0, 1]
    assert index.chunks[b].volume_seq == 1 and index.chunks[a].volume_seq == 0
    assert index.incomplete_archives() == [] and index.missing_volumes() == []
    # Only the first volume: the archive is known to be incomplete.
    assert build_index([first]).incomplete_archives() == [archive]
    with pytest.raises(ContinuationMismatch, match="does not follow"):
        build_index([first, _catalog(ms, 1, [part(2, 2, False, [])])])
    with pytest.raises(ContinuationMismatch, match="belongs to media set"):
        build_index([first, _catalog(new_uuid(), 1, [])])
    with pytest.raises(ContinuationMismatch, match="two catalogs"):
        build_index([first, _catalog(ms, 0, [])])
