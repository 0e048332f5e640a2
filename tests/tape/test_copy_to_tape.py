"""Copy jobs from a disk pool into tape pools, through the facade and a real tgt library."""

from __future__ import annotations

import os
from pathlib import Path

from tapir.appliance.engine.service import Appliance

from .conftest import MakePool, add_volumes, make_tree, restored, tree


def _copies(app: Appliance, job: str):
    return sorted(app.recovery_points(job=job), key=lambda rp: (rp.created_at, rp.id))


def _ok(run) -> None:
    assert run.state == "succeeded", f"run {run.id} {run.state}: {run.error}"


def test_disk_points_copied_to_tape_restore_and_continue_incrementally(
    app: Appliance, make_pool: MakePool, tmp_path: Path
) -> None:
    add_volumes(app, ["TAP001L8", "TAP002L8", "TAP003L8", "TAP004L8"])
    make_pool("tape1")
    make_pool("fresh", allocation="always-new")
    source = make_tree(tmp_path / "src", 1 << 20, seed=1)
    app.create_job("home", "files", "default", options={"paths": [str(source)]})
    _ok(app.run_job("home"))
    first = tree(source)
    (source / "data.bin").write_bytes(os.urandom(1 << 20))
    (source / "docs/new.txt").write_bytes(b"added after the first backup\n")
    _ok(app.run_job("home"))
    second = tree(source)
    originals = _copies(app, "home")
    assert len(originals) == 2

    app.create_copy_job("vault", "default", "tape1")
    _ok(app.run_job("vault"))
    copies = _copies(app, "vault")
    assert [c.meta["copied_from"] for c in copies] == [rp.id for rp in originals]
    assert [c.level for c in copies] == ["full", "incremental"]
    assert copies[1].parent_id == copies[0].id
    assert {c.pool.name for c in copies} == {"tape1"}
    assert restored(app, copies[0].id, tmp_path / "out0", source) == first
    assert restored(app, copies[1].id, tmp_path / "out1", source) == second

    # The next run copies only what the source gained since: one new point,
    # an incremental on the last copy, which is on the media set still open.
    (source / "data.bin").write_bytes(os.urandom(1 << 20))
    _ok(app.run_job("home"))
    third = tree(source)
    run = app.run_job("vault")
    _ok(run)
    later = _copies(app, "vault")
    assert [c.id for c in later[:2]] == [c.id for c in copies]
    newest = later[2]
    assert newest.meta["copied_from"] == _copies(app, "home")[2].id
    assert (newest.level, newest.parent_id) == ("incremental", copies[1].id)
    assert restored(app, newest.id, tmp_path / "out2", source) == third
    assert len({v.media_set for v in _volumes(app, "tape1")}) == 1

    # A pool that starts a new media set for every session cannot reference an
    # earlier copy (each set must restore alone): every copy there is a full.
    app.create_copy_job("vault-new", "default", "fresh")
    run = app.run_job("vault-new")
    _ok(run)
    fulls = _copies(app, "vault-new")
    assert [c.level for c in fulls] == ["full", "full", "full"]
    assert all(c.parent_id is None for c in fulls)
    assert any("copying in full" in m for _, _, m in app.run_log(run.id))
    sets = {v.media_set for v in _volumes(app, "fresh")}
    assert len(sets) == 3
    assert restored(app, fulls[1].id, tmp_path / "out3", source) == second


def _volumes(app: Appliance, pool: str):
    vols = app.plugin_context("tape").volumes
    assert vols is not None
    return vols.list(pool=pool)
