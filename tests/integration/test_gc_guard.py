"""Garbage collection never takes a chunk that a backup in flight relies on.

Two openings of one disk pool stand for two processes (flock treats separate
open file descriptions like separate processes).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tapir.appliance.datapath.reader import RecoveryPointReader
from tapir.appliance.datapath.repository import Repository
from tapir.appliance.datapath.sink import RecoveryPointWriter
from tapir.appliance.plugin_api import Item, ItemKind, PluginContext, PoolInfo
from tapir.plugins.disk.locking import PoolBusy
from tapir.plugins.disk.plugin import DiskMediaPlugin
from tapir.plugins.disk.store import DiskStore

MASTER = b"m" * 32


def _ctx() -> PluginContext:
    import logging

    return PluginContext(logger=logging.getLogger("test"))


@pytest.fixture
def pool(tmp_path: Path) -> Path:
    path = tmp_path / "pool"
    store = DiskMediaPlugin().create(PoolInfo(1, "p", "disk", {"path": str(path)}), _ctx())
    Repository.initialize(store, master_key=MASTER, encrypted=True)
    store.close()
    return path


def _writer(repo: Repository) -> RecoveryPointWriter:
    return RecoveryPointWriter(
        repo,
        asset={"plugin": "t", "kind": "host", "name": "h", "external_id": "h"},
        kind="files",
        level="full",
        workers=2,
    )


def _add_file(sink: RecoveryPointWriter, path: bytes, data: bytes) -> None:
    fw = sink.open_file(Item(path=path, kind=ItemKind.FILE, mode=0o100644, size=len(data)))
    fw.write(data)
    fw.close()


def test_gc_waits_for_a_backup_between_commit_and_manifest(pool: Path) -> None:
    repo_a = Repository.open(DiskStore(pool), master_key=MASTER)
    repo_b = Repository.open(DiskStore(pool, lock_timeout=0.3), master_key=MASTER)
    data = os.urandom(3 << 20)
    sink = _writer(repo_a)
    _add_file(sink, b"f", data)

    seen: list[str] = []
    write_manifest = repo_a.write_manifest

    def gc_in_the_window(manifest):  # type: ignore[no-untyped-def]
        # The chunks are committed and no manifest names them yet: the worst moment.
        with pytest.raises(PoolBusy):
            repo_b.gc()
        seen.append("gc refused")
        write_manifest(manifest)

    repo_a.write_manifest = gc_in_the_window  # type: ignore[method-assign]
    manifest = sink.finish()
    assert seen == ["gc refused"]

    report = repo_b.gc()
    assert report.chunks_unreferenced == 0
    reader = RecoveryPointReader(repo_b, manifest.id)
    (item,) = [i for i in reader.items() if i.path == b"f"]
    assert reader.open(item).read() == data
    assert repo_b.verify().ok


def test_a_backup_waits_while_gc_holds_the_pool(pool: Path) -> None:
    store_a = DiskStore(pool, lock_timeout=0.3)
    repo_a = Repository.open(store_a, master_key=MASTER)
    repo_b = Repository.open(DiskStore(pool), master_key=MASTER)
    with repo_b.store.guard(exclusive=True), pytest.raises(PoolBusy):
        _writer(repo_a)
    # Once gc is done the backup goes ahead.
    sink = _writer(repo_a)
    _add_file(sink, b"g", b"x" * 1000)
    sink.finish()
    assert repo_a.verify().ok


def test_an_aborted_backup_releases_the_pool(pool: Path) -> None:
    repo_a = Repository.open(DiskStore(pool), master_key=MASTER)
    repo_b = Repository.open(DiskStore(pool, lock_timeout=0.3), master_key=MASTER)
    sink = _writer(repo_a)
    _add_file(sink, b"f", os.urandom(100_000))
    sink.abort()
    assert repo_b.gc().chunks_unreferenced == 0
