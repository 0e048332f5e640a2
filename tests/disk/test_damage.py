"""Damaged packs and index segments: content is returned as stored, framing damage is named."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tapir.appliance.plugin_api import ChunkCorrupt, ChunkMissing
from tapir.plugins.disk.index import IndexDamaged, IndexRecord
from tapir.plugins.disk.packs import ENTRY_HEADER_SIZE
from tapir.plugins.disk.store import DiskStore

from .helpers import chunk


def _filled(make_pool: Callable[..., DiskStore], n: int = 30) -> tuple[DiskStore, dict]:
    store = make_pool()
    chunks = dict(chunk(i, 3000) for i in range(n))
    session = store.begin()
    for cid, blob in chunks.items():
        session.put_chunk(cid, blob)
    session.commit()
    return store, chunks


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x40]))


def _where(store: DiskStore, cid: bytes) -> tuple[Path, IndexRecord]:
    (rec,) = [r for r in store.index_records() if r.chunk_id == cid]
    return store.layout.pack_path(rec.pack_id), rec


def test_flipped_payload_byte_is_returned_as_stored(make_pool: Callable[..., DiskStore]) -> None:
    store, chunks = _filled(make_pool)
    cid, blob = next(iter(chunks.items()))
    path, rec = _where(store, cid)
    _flip(path, rec.offset + ENTRY_HEADER_SIZE + 100)
    got = store.get_chunk(cid)
    assert len(got) == len(blob) and got != blob
    assert [i for i in range(len(blob)) if got[i] != blob[i]] == [100]
    # A deep rebuild notices it, keeps the entry, and the others are untouched.
    report = store.rebuild_index(deep=True)
    assert any("payload checksum" in p and cid.hex() in p for p in report.problems)
    assert store.get_chunk(cid) == got
    for other, other_blob in chunks.items():
        if other != cid:
            assert store.get_chunk(other) == other_blob


@pytest.mark.parametrize("where", [0, 10, 36, 44])  # magic, chunk id, length, header crc
def test_framing_damage_names_the_pack(make_pool: Callable[..., DiskStore], where: int) -> None:
    store, chunks = _filled(make_pool)
    cid = list(chunks)[3]
    path, rec = _where(store, cid)
    _flip(path, rec.offset + where)
    with pytest.raises(ChunkCorrupt) as info:
        store.get_chunk(cid)
    assert str(path) in str(info.value) and "damaged" in str(info.value)
    assert info.value.chunk_id == cid
    for other, blob in chunks.items():
        if other != cid:
            assert store.get_chunk(other) == blob


def test_truncated_pack(make_pool: Callable[..., DiskStore]) -> None:
    store, chunks = _filled(make_pool)
    path, rec = _where(store, list(chunks)[5])
    in_pack = sorted(
        (r for r in store.index_records() if r.pack_id == rec.pack_id), key=lambda r: r.offset
    )
    assert len(in_pack) > 2
    cut = in_pack[1]
    os.truncate(path, cut.offset + ENTRY_HEADER_SIZE + 10)
    assert store.get_chunk(in_pack[0].chunk_id) == chunks[in_pack[0].chunk_id]
    for r in in_pack[1:]:
        with pytest.raises(ChunkMissing, match=f"pack {path} is truncated"):
            store.get_chunk(r.chunk_id)
    # Rebuilding walks the pack, keeps the intact entry and reports the damage.
    report = store.rebuild_index()
    assert any("no valid trailer" in p for p in report.problems)
    assert any("cut short" in p for p in report.problems)
    assert store.get_chunk(in_pack[0].chunk_id) == chunks[in_pack[0].chunk_id]
    for r in in_pack[1:]:
        assert not store.has_chunk(r.chunk_id)
    others = [c for c in chunks if c not in {r.chunk_id for r in in_pack}]
    assert others and all(store.get_chunk(c) == chunks[c] for c in others)


def test_rebuild_salvages_entries_after_a_damaged_one(make_pool: Callable[..., DiskStore]) -> None:
    store, chunks = _filled(make_pool)
    first = store.index_records()[0]
    in_pack = sorted(
        (r for r in store.index_records() if r.pack_id == first.pack_id), key=lambda r: r.offset
    )
    path = store.layout.pack_path(first.pack_id)
    _flip(path, in_pack[1].offset + 10)  # the second entry's header
    report = store.rebuild_index(deep=True)
    assert any(f"offset {in_pack[1].offset} is damaged" in p for p in report.problems)
    assert not store.has_chunk(in_pack[1].chunk_id)
    for r in [in_pack[0], *in_pack[2:]]:
        assert store.get_chunk(r.chunk_id) == chunks[r.chunk_id]


def test_deleted_pack_gives_chunk_missing(make_pool: Callable[..., DiskStore]) -> None:
    store, chunks = _filled(make_pool)
    cid = next(iter(chunks))
    path, _ = _where(store, cid)
    path.unlink()
    with pytest.raises(ChunkMissing, match="is gone"):
        store.get_chunk(cid)


def test_damaged_index_segment(make_pool: Callable[..., DiskStore]) -> None:
    store, chunks = _filled(make_pool)
    records = store.index_records()
    (segment,) = list((store.path / "index").iterdir())
    _flip(segment, 30)
    reopened = make_pool(store.path)  # opening still works, so the index can be rebuilt
    cid = next(iter(chunks))
    with pytest.raises(ChunkMissing, match=r"index segment.* damaged"):
        reopened.get_chunk(cid)
    with pytest.raises(IndexDamaged, match="garbage collection refused"):
        reopened.delete_chunks([cid])
    assert all(p.exists() for p in (store.path / "packs").rglob("*.pack"))
    reopened.rebuild_index()
    assert reopened.index_records() == records
    assert all(reopened.get_chunk(c) == b for c, b in chunks.items())
    assert not segment.exists()
