"""Copy jobs between two disk pools with the real files plugin: what is copied restores
byte for byte with its metadata, a second run copies only what is new and dedups, and
the copy outlives its source."""

from __future__ import annotations

import os
import random
from pathlib import Path

from copyhelpers import MiB, assert_ok, copies, make_tree, restored, snapshot

from tapir.appliance.datapath.reader import RecoveryPointReader
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_api import ItemKind


def test_a_copy_restores_byte_for_byte_with_its_metadata(app: Appliance, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, seed=1)
    app.create_job("web", "files", "default", options={"paths": [str(src)]})
    assert_ok(app.run_job("web"))
    (source,) = app.recovery_points(job="web")
    app.create_copy_job("vault", "default", "offsite")

    run = app.run_job("vault")
    assert_ok(run)
    assert run.kind == "copy"
    (copy,) = copies(app, "vault")
    assert copy.pool.name == "offsite"
    assert copy.level == "full" and copy.parent_id is None
    assert copy.kind == source.kind and copy.plugin == "files"
    assert copy.asset_id == source.asset_id
    assert copy.items == source.items and copy.bytes_logical == source.bytes_logical
    assert copy.meta["copied_from"] == source.id
    assert copy.meta["source_created_at"] == source.created_at.isoformat()
    assert copy.meta["source_pool"] == "default" and copy.meta["source_job"] == "web"
    # The copy keeps the time its data was captured.
    assert copy.created_at == source.created_at

    root = restored(app, copy.id, tmp_path / "restore", src)
    assert snapshot(root) == snapshot(src)
    # The sparse file came back sparse: its 16 MiB hold one small data area.
    assert (root / "sparse.img").stat().st_blocks * 512 < MiB

    # The item records match the source's, holes included, chunk ids aside.
    src_repo, dst_repo = app.repository("default"), app.repository("offsite")
    try:
        before = {i.path: i for i in RecoveryPointReader(src_repo, source.id).items()}
        after = {i.path: i for i in RecoveryPointReader(dst_repo, copy.id).items()}
    finally:
        src_repo.store.close()
        dst_repo.store.close()
    assert before.keys() == after.keys()
    for path, item in before.items():
        other = after[path]
        assert (other.kind, other.mode, other.mtime_ns, other.size, other.target) == (
            item.kind,
            item.mode,
            item.mtime_ns,
            item.size,
            item.target,
        ), path
        assert other.xattrs == item.xattrs, path
        if item.kind == ItemKind.FILE:
            holes = [c.length for c in item.chunks if c.id is None]
            assert [c.length for c in other.chunks if c.id is None] == holes, path

    # Nothing new to copy: the next run copies nothing and says so.
    again = app.run_job("vault")
    assert_ok(again)
    assert len(copies(app, "vault")) == 1
    assert any("0 recovery point(s) to copy" in m for _, _, m in app.run_log(again.id))


def test_a_second_run_copies_only_the_new_points_and_dedups(app: Appliance, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, seed=2, size=8 * MiB)
    app.create_job("web", "files", "default", options={"paths": [str(src)]})
    assert_ok(app.run_job("web"))
    app.create_copy_job("vault", "default", "offsite")
    first = app.run_job("vault")
    assert_ok(first)
    assert first.bytes_written > 8 * MiB  # the first copy stores the data

    # A small change, and a new backup of it.
    with open(src / "data" / "big.bin", "r+b") as f:
        f.seek(3 * MiB)
        f.write(os.urandom(1000))
    (src / "new.txt").write_text("a new file\n")
    assert_ok(app.run_job("web"))
    newest = app.recovery_points(job="web")[0]

    second = app.run_job("vault")
    assert_ok(second)
    made = copies(app, "vault")
    assert len(made) == 2
    assert made[1].meta["copied_from"] == newest.id
    assert made[1].level == "incremental" and made[1].parent_id == made[0].id
    # The unchanged data was found on the target: only the changed chunks were added,
    # about what the source's own incremental added, and far below the data's size.
    assert made[1].bytes_new == second.bytes_written
    assert second.bytes_written <= newest.bytes_new + 64 * 1024
    assert second.bytes_written < made[1].bytes_logical // 4

    root = restored(app, made[1].id, tmp_path / "restore", src)
    assert snapshot(root) == snapshot(src)


def test_a_point_deleted_from_the_source_stays_restorable_from_the_copy(
    app: Appliance, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    make_tree(src, seed=3)
    expected = snapshot(src)
    app.create_retention_policy("one", keep_last=1)
    app.create_job("web", "files", "default", options={"paths": [str(src)]}, retention="one")
    assert_ok(app.run_job("web"))
    (source,) = app.recovery_points(job="web")
    app.create_copy_job("vault", "default", "offsite")
    assert_ok(app.run_job("vault"))

    # The source forgets the point: retention on a new backup, then gc of its chunks.
    rnd = random.Random(9)
    (src / "data" / "big.bin").write_bytes(rnd.randbytes(MiB))
    assert_ok(app.run_job("web"))
    plan = app.prune(dry_run=False, job="web")
    assert plan.deleted == 1
    assert source.id not in {rp.id for rp in app.recovery_points()}
    report = app.gc("default")
    assert report.chunks_unreferenced > 0

    (copy,) = copies(app, "vault")
    root = restored(app, copy.id, tmp_path / "restore", src)
    assert snapshot(root) == expected
    assert app.verify(copy.id).ok

    # The next run copies the new point only; the copy of the deleted one stays.
    assert_ok(app.run_job("vault"))
    made = copies(app, "vault")
    assert len(made) == 2
    assert made[0].id == copy.id and made[0].meta["copied_from"] == source.id
