"""Copies of disk images (the imagefile plugin): re-chunked at the same offsets, holes
kept as holes, restorable whole, and deduplicated against the previous copy."""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

from copyhelpers import MiB, assert_ok, copies

from tapir.appliance.datapath.reader import RecoveryPointReader
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_api import ItemKind


def _make_disk(path: Path, size: int) -> None:
    rnd = random.Random(5)
    with open(path, "wb") as f:
        f.truncate(size)
        for offset in (0, 9 * MiB, 21 * MiB + 777, size - MiB):
            f.seek(offset)
            f.write(rnd.randbytes(MiB))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _disk_items(app: Appliance, pool: str, rp_id: str) -> list:
    repo = app.repository(pool)
    try:
        return [i for i in RecoveryPointReader(repo, rp_id).items() if i.kind == ItemKind.DISK]
    finally:
        repo.store.close()


def test_disk_image_copies_restore_whole_and_dedup(app: Appliance, tmp_path: Path) -> None:
    disk = tmp_path / "vm-disk0.img"
    size = 40 * MiB + 4096  # not a multiple of the chunk size
    _make_disk(disk, size)
    changes = tmp_path / "changed.json"
    changes.write_text(json.dumps({str(disk): []}))
    app.create_job(
        "vm1",
        "imagefile",
        "default",
        options={"images": [str(disk)], "name": "vm1", "changed_extents": str(changes)},
    )
    assert_ok(app.run_job("vm1", level="full"))
    first_digest = _digest(disk)
    app.create_copy_job("vault", "default", "offsite")
    run = app.run_job("vault")
    assert_ok(run)
    # Only the stored chunks of the source were read: its holes stay holes.
    (full,) = app.recovery_points(job="vm1")
    (item,) = _disk_items(app, "default", full.id)
    stored = sum(c.length for c in item.chunks if c.id is not None)
    assert stored < size // 2
    assert run.bytes_read == stored

    with open(disk, "r+b") as f:
        f.seek(30 * MiB)
        f.write(os.urandom(8192))
    changes.write_text(json.dumps({str(disk): [[30 * MiB, 8192]]}))
    assert_ok(app.run_job("vm1"))
    second = app.run_job("vault")
    assert_ok(second)
    made = copies(app, "vault")
    assert [rp.level for rp in made] == ["full", "incremental"]
    assert all(rp.kind == "image" for rp in made)
    # One 4 MiB chunk changed; everything else was already on the target.
    assert second.bytes_written <= 4 * MiB + 64 * 1024

    for rp, expected in ((made[0], first_digest), (made[1], _digest(disk))):
        target = tmp_path / f"restore-{rp.level}"
        result = app.restore(rp.id, target=target)
        assert not result.failed, result.failed
        (out,) = list(target.iterdir())
        assert out.stat().st_size == size
        assert _digest(out) == expected
        assert out.stat().st_blocks * 512 < size // 2

    # Same item records as the source: size, holes where the source had holes.
    source = app.recovery_points(job="vm1")[0]
    (a,) = _disk_items(app, "default", source.id)
    (b,) = _disk_items(app, "offsite", made[1].id)
    assert (a.path, a.size, a.mode, a.extra.get("chunk_size")) == (
        b.path,
        b.size,
        b.mode,
        b.extra.get("chunk_size"),
    )
    assert [(c.length, c.id is None) for c in a.chunks] == [
        (c.length, c.id is None) for c in b.chunks
    ]
