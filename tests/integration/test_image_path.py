"""The image path end to end: a disk image backed up through the engine, full then
incremental from changed extents, restored whole and read at random."""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

from tapir.appliance.datapath.reader import RecoveryPointReader
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_api import ItemKind

MiB = 1 << 20
CHUNK = 4 * MiB


def _make_disk(path: Path, size: int) -> None:
    """A sparse disk with data regions, a written run of zeros and holes."""
    rng = random.Random(7)
    with open(path, "wb") as f:
        f.truncate(size)
        for offset in (0, 9 * MiB, 20 * MiB + 12345, size - MiB):
            f.seek(offset)
            f.write(rng.randbytes(MiB))
        f.seek(30 * MiB)
        f.write(bytes(2 * MiB))  # allocated but all zero: stored as a hole


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_full_then_incremental_image_backup_restores_and_reads_at_random(
    app: Appliance, tmp_path: Path
) -> None:
    disk = tmp_path / "vm-disk0.img"
    size = 64 * MiB + 4096  # not a multiple of the chunk size
    _make_disk(disk, size)
    changes = tmp_path / "changed.json"
    app.create_job(
        "vm1",
        "imagefile",
        "default",
        options={"images": [str(disk)], "name": "vm1", "changed_extents": str(changes)},
    )
    changes.write_text(json.dumps({str(disk): []}))
    full = app.run_job("vm1", level="full")
    assert full.state == "succeeded", full.error
    full_digest = _digest(disk)

    # The guest writes two small areas; the hypervisor's change tracking reports them.
    written = [(5 * MiB + 100, 64 * 1024), (40 * MiB, 4096)]
    with open(disk, "r+b") as f:
        for offset, length in written:
            f.seek(offset)
            f.write(os.urandom(length))
    changes.write_text(json.dumps({str(disk): [list(w) for w in written]}))
    inc = app.run_job("vm1")
    assert inc.state == "succeeded", inc.error
    assert inc.level == "incremental"
    # Only the changed bytes were read from the disk: the rest of the two 4 MiB chunks
    # they touch came from the parent's chunks in the pool.
    assert inc.bytes_read == sum(length for _, length in written) < CHUNK
    assert inc.bytes_written <= 2 * CHUNK + 64 * 1024

    points = app.recovery_points(job="vm1")
    assert [p.level for p in points] == ["incremental", "full"]
    assert points[0].kind == "image"

    # Each point restores whole: the incremental is a synthetic full.
    for rp, expected in ((points[0], _digest(disk)), (points[1], full_digest)):
        target = tmp_path / f"restore-{rp.level}"
        app.restore(rp.id, target=target)
        (restored,) = list(target.iterdir())
        assert restored.stat().st_size == size
        assert _digest(restored) == expected
        # Holes stay holes: far less is allocated than the disk's size.
        assert restored.stat().st_blocks * 512 < size // 2

    # Random access over the incremental, fetching only what a read touches.
    repo = app.repository("default")
    reader = RecoveryPointReader(repo, points[0].id)
    (item,) = [i for i in reader.items() if i.kind == ItemKind.DISK]
    image = reader.open_disk(item)
    source = disk.read_bytes()
    rng = random.Random(3)
    for _ in range(50):
        offset = rng.randrange(0, size)
        length = rng.randrange(1, 3 * CHUNK)
        assert image.pread(offset, length) == source[offset : offset + length]


def test_deleting_the_full_keeps_the_incremental_whole(app: Appliance, tmp_path: Path) -> None:
    disk = tmp_path / "d.img"
    _make_disk(disk, 32 * MiB)
    changes = tmp_path / "changed.json"
    changes.write_text(json.dumps({str(disk): []}))
    app.create_job(
        "vm2",
        "imagefile",
        "default",
        options={"images": [str(disk)], "changed_extents": str(changes)},
    )
    assert app.run_job("vm2").state == "succeeded"
    with open(disk, "r+b") as f:
        f.seek(MiB)
        f.write(b"\xff" * 4096)
    changes.write_text(json.dumps({str(disk): [[MiB, 4096]]}))
    assert app.run_job("vm2").state == "succeeded"
    inc, _full = app.recovery_points(job="vm2")
    app.create_retention_policy("one", keep_last=1)
    with app.catalog.session() as s:
        from sqlalchemy import select

        from tapir.appliance.catalog.models import Job, RetentionPolicy

        job = s.scalar(select(Job).where(Job.name == "vm2"))
        job.retention_policy_id = s.scalar(
            select(RetentionPolicy.id).where(RetentionPolicy.name == "one")
        )
    plan = app.prune(dry_run=False, job="vm2")
    assert plan.deleted == 1
    assert [p.id for p in app.recovery_points(job="vm2")] == [inc.id]
    assert app.gc("default").bytes_reclaimed >= 0
    assert app.verify(inc.id).ok
    target = tmp_path / "r"
    app.restore(inc.id, target=target)
    (restored,) = list(target.iterdir())
    assert restored.read_bytes() == disk.read_bytes()
