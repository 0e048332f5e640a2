"""A full file system (a real 8 MiB tmpfs): MediaFull, nothing committed lost, recovery."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tapir.appliance.plugin_api import MediaFull, TapirError
from tapir.plugins.disk.store import DiskStore

from .helpers import chunk

pytestmark = pytest.mark.root


def _fill(path: Path) -> None:
    """Write ``path`` until the file system has no byte left."""
    with open(path, "wb", buffering=0) as f:
        for size in (1 << 16, 4096, 512, 1):
            try:
                while True:
                    f.write(b"\xff" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    assert os.statvfs(path).f_bavail == 0


def _commit(store: DiskStore, prefix: str, n: int, size: int) -> dict[bytes, bytes]:
    chunks = dict(chunk(f"{prefix}-{i}", size) for i in range(n))
    session = store.begin()
    for cid, blob in chunks.items():
        session.put_chunk(cid, blob)
    session.commit()
    return chunks


def _assert_intact(store: DiskStore, chunks: dict[bytes, bytes]) -> None:
    for cid, blob in chunks.items():
        assert store.get_chunk(cid) == blob


def test_full_while_putting_chunks(tmpfs: Path, make_pool: Callable[..., DiskStore]) -> None:
    store = make_pool(tmpfs / "pool", pack_size=1 << 20)
    kept = _commit(store, "kept", 32, 64 * 1024)
    store.put_manifest("point-1", b"manifest one")
    used = store.capacity().used
    packs_before = sorted((tmpfs / "pool" / "packs").rglob("*.pack"))
    (tmpfs / "filler").write_bytes(b"\0" * (3 << 20))

    session = store.begin()
    lost = dict(chunk(f"lost-{i}", 64 * 1024) for i in range(160))
    with pytest.raises(MediaFull) as info:
        for cid, blob in lost.items():
            session.put_chunk(cid, blob)
    message = str(info.value)
    assert str(tmpfs / "pool") in message and "bytes free" in message
    assert "file system full" in message

    assert store.temporary_files() == []
    assert sorted((tmpfs / "pool" / "packs").rglob("*.pack")) == packs_before
    with pytest.raises(TapirError, match="failed earlier"):
        session.put_chunk(*chunk("more"))
    with pytest.raises(TapirError, match="failed earlier"):
        session.commit()
    session.abort()
    assert not any(store.has_chunk(cid) for cid in lost)
    _assert_intact(store, kept)
    assert store.get_manifest("point-1") == b"manifest one"
    assert store.capacity().used == used

    (tmpfs / "filler").unlink()
    later = _commit(store, "later", 24, 64 * 1024)
    _assert_intact(store, later)
    _assert_intact(make_pool(tmpfs / "pool"), kept | later)


def test_full_while_committing(tmpfs: Path, make_pool: Callable[..., DiskStore]) -> None:
    store = make_pool(tmpfs / "pool", pack_size=256 * 1024)
    kept = _commit(store, "kept", 10, 50_000)
    records = store.index_records()
    session = store.begin()
    pending = dict(chunk(f"pending-{i}", 50_000) for i in range(12))
    for cid, blob in pending.items():
        session.put_chunk(cid, blob)
    _fill(tmpfs / "filler")  # the commit must still seal packs and publish a segment

    with pytest.raises(MediaFull, match="while committing"):
        session.commit()
    assert store.temporary_files() == []
    assert store.index_records() == records
    assert not any(store.has_chunk(cid) for cid in pending)
    _assert_intact(store, kept)

    (tmpfs / "filler").unlink()
    retry = store.begin()
    for cid, blob in pending.items():
        retry.put_chunk(cid, blob)
    retry.commit()
    _assert_intact(store, kept | pending)


def test_full_while_writing_manifest_and_config(
    tmpfs: Path, make_pool: Callable[..., DiskStore]
) -> None:
    store = make_pool(tmpfs / "pool")
    store.put_manifest("point-1", b"old manifest")
    store.put_config("repository", b"old config")
    _fill(tmpfs / "filler")
    with pytest.raises(MediaFull, match="writing manifest point-1"):
        store.put_manifest("point-1", b"new manifest " * 1000)
    with pytest.raises(MediaFull, match="writing config repository"):
        store.put_config("repository", b"new config " * 1000)
    session = store.begin()
    with pytest.raises(MediaFull):
        session.put_chunk(*chunk("no room"))
    assert store.temporary_files() == []
    assert store.get_manifest("point-1") == b"old manifest"
    assert store.get_config("repository") == b"old config"
    assert store.manifests() == ["point-1"]
    (tmpfs / "filler").unlink()
    store.put_manifest("point-1", b"new manifest")
    assert store.get_manifest("point-1") == b"new manifest"
