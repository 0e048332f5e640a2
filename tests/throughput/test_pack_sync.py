"""Disk pool packs: fsync outside the append lock, vectored entry writes, same format."""

from __future__ import annotations

import errno
import os
import random
import threading
from pathlib import Path

import pytest

from tapir.appliance.plugin_api import PoolInfo, TapirError
from tapir.plugins.disk import packs as packs_mod
from tapir.plugins.disk.files import write_all_vectored
from tapir.plugins.disk.layout import create_layout
from tapir.plugins.disk.packs import PackWriter, encode_entry_header, read_entry, scan_pack
from tapir.plugins.disk.store import DiskStore


def open_pool(path: Path, pack_size: int = 64 * 1024) -> DiskStore:
    if not (path / "tapir-disk-pool.json").exists():
        create_layout(path, PoolInfo(id=1, name="t", media="disk", options={"path": str(path)}))
    return DiskStore(path, pack_size=pack_size, lock_timeout=5.0)


def blobs(count: int, seed: int = 0) -> dict[bytes, bytes]:
    rng = random.Random(seed)
    return {rng.randbytes(32): rng.randbytes(rng.randint(1, 20_000)) for _ in range(count)}


def test_concurrent_puts_fill_many_packs_and_all_read_back(tmp_path: Path) -> None:
    store = open_pool(tmp_path / "pool")
    data = blobs(400)
    session = store.begin()
    items = list(data.items())

    def put(part: list[tuple[bytes, bytes]]) -> None:
        for chunk_id, blob in part:
            session.put_chunk(chunk_id, blob)

    threads = [threading.Thread(target=put, args=(items[i::3],)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    session.commit()
    packs = list((tmp_path / "pool" / "packs").rglob("*.pack"))
    assert len(packs) > 20
    for pack in packs:  # every pack is sealed: its table lists what a walk finds
        assert not scan_pack(pack).problems
    reopened = open_pool(tmp_path / "pool")
    for chunk_id, blob in data.items():
        assert reopened.get_chunk(chunk_id) == blob


def test_every_pack_is_fsynced_before_it_is_published(tmp_path: Path, monkeypatch) -> None:
    synced: set[int] = set()
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.add(os.fstat(fd).st_ino)
        real_fsync(fd)

    monkeypatch.setattr(packs_mod.os, "fsync", fsync)
    store = open_pool(tmp_path / "pool")
    session = store.begin()
    for chunk_id, blob in blobs(100, seed=1).items():
        session.put_chunk(chunk_id, blob)
    session.commit()
    packs = list((tmp_path / "pool" / "packs").rglob("*.pack"))
    assert packs and {p.stat().st_ino for p in packs} <= synced


def test_a_failed_pack_sync_fails_the_session_and_publishes_nothing(
    tmp_path: Path, monkeypatch
) -> None:
    def broken_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    store = open_pool(tmp_path / "pool")
    session = store.begin()
    monkeypatch.setattr(packs_mod.os, "fsync", broken_fsync)
    with pytest.raises(TapirError, match="Input/output error"):
        for chunk_id, blob in blobs(200, seed=2).items():
            session.put_chunk(chunk_id, blob)
    assert session.state == "failed"
    with pytest.raises(TapirError, match="failed earlier"):
        session.commit()
    monkeypatch.undo()
    assert list(open_pool(tmp_path / "pool").chunk_ids()) == []
    assert not list((tmp_path / "pool" / "packs").rglob("*.pack"))


def test_a_full_disk_while_syncing_is_media_full(tmp_path: Path, monkeypatch) -> None:
    from tapir.appliance.plugin_api import MediaFull

    def full_fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    store = open_pool(tmp_path / "pool")
    session = store.begin()
    monkeypatch.setattr(packs_mod.os, "fsync", full_fsync)
    with pytest.raises(MediaFull):
        for chunk_id, blob in blobs(200, seed=3).items():
            session.put_chunk(chunk_id, blob)


def test_vectored_entries_are_byte_identical_to_the_format(tmp_path: Path) -> None:
    chunk_id, blob = os.urandom(32), os.urandom(5000)
    writer = PackWriter(tmp_path / "p.pack", os.urandom(16))
    entry = writer.append(chunk_id, memoryview(blob))
    writer.finish()
    raw = (tmp_path / "p.pack").read_bytes()
    framed = encode_entry_header(chunk_id, blob) + blob
    assert raw[entry.offset : entry.offset + len(framed)] == framed
    assert read_entry(tmp_path / "p.pack", entry.offset, chunk_id, len(blob)) == blob
    with pytest.raises(ValueError, match="closed"):
        writer.append(chunk_id, blob)


def test_write_all_vectored_survives_short_writes(tmp_path: Path, monkeypatch) -> None:
    real = os.writev

    def short(fd: int, buffers):  # type: ignore[no-untyped-def]
        first = bytes(buffers[0])[:3] if len(buffers[0]) > 3 else bytes(buffers[0])
        return real(fd, [first])

    monkeypatch.setattr(os, "writev", short)
    path = tmp_path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        write_all_vectored(fd, b"header", b"the body of it")
    finally:
        os.close(fd)
    assert path.read_bytes() == b"headerthe body of it"
