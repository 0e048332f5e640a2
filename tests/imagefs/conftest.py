"""A partitioned guest disk built from scratch, backed up as qcow2 through the real
engine (imagefile plugin, disk pool): a full, then an incremental after the guest
rewrote one file in place. Built once per test session; tests only read it."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tapir.appliance.config import Settings
from tapir.appliance.engine.service import Appliance

from .content import make_tree, sha256
from .disks import MiB, Part, build_disk, qcow2

#: Volume number -> file system, in the GPT disk every browsing test reads.
VOLUMES = {"1": "ext", "2": "ntfs", "3": "fat", "4": "xfs", "5": "btrfs"}


@dataclass
class Guest:
    """The backed-up machine: its appliance, points, and the expected file contents."""

    app: Appliance
    full: str
    incremental: str
    sums: dict[str, str]  # relative path -> sha256, as in the full
    changed: str  # the file the guest rewrote before the incremental
    changed_sum: str
    source: Path  # the tree the file systems were made from
    raw: Path


def find_unique(path: Path, needle: bytes, first: int, last: int) -> int:
    """The one offset of ``needle`` in the data areas of ``path`` between two offsets."""
    found = []
    with open(path, "rb") as f:
        fd = f.fileno()
        size = os.fstat(fd).st_size
        pos = 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            f.seek(start)
            data = f.read(end - start)
            at = data.find(needle)
            while at >= 0:
                if first <= start + at < last:
                    found.append(start + at)
                at = data.find(needle, at + 1)
            pos = end
    assert len(found) == 1, f"{needle[:8]!r} found at {found}"
    return found[0]


def open_appliance(home: Path) -> Appliance:
    settings = Settings(home=home / "home", database_url=f"sqlite:///{home / 'catalog.db'}")
    app = Appliance.open(settings)
    app.initialize()
    return app


@pytest.fixture(scope="session")
def guest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guest]:
    work = tmp_path_factory.mktemp("imagefs-guest")
    source = work / "src"
    source.mkdir()
    sums = make_tree(source)
    raw = build_disk(
        work / "guest.raw",
        640 * MiB,
        [
            Part("ext4", 32 * MiB, source),
            Part("ntfs", 16 * MiB, source),
            Part("fat", 40 * MiB, source),
            Part("xfs", 300 * MiB, source),
            Part("btrfs", 128 * MiB, source),
        ],
    )
    image = qcow2(raw, work / "guest.qcow2")
    app = open_appliance(work)
    changes = work / "changed.json"
    changes.write_text(json.dumps({str(image): []}))
    app.create_job(
        "guest",
        "imagefile",
        "default",
        options={"images": [str(image)], "name": "guest", "changed_extents": str(changes)},
    )
    full = app.run_job("guest", level="full")
    assert full.state == "succeeded", full.error

    # The guest rewrites report.bin in place on its ext4 partition (same size), and
    # change tracking reports exactly the bytes written.
    old = (source / "report.bin").read_bytes()
    new = random.Random(99).randbytes(len(old))
    offset = find_unique(raw, old[:4096], 1 * MiB, 33 * MiB)  # the ext4 partition
    with open(raw, "r+b") as f:
        f.seek(offset)
        assert f.read(len(old)) == old, "report.bin is not contiguous on disk"
        f.seek(offset)
        f.write(new)
    qcow2(raw, image)
    changes.write_text(json.dumps({str(image): [[offset, len(new)]]}))
    inc = app.run_job("guest")
    assert inc.state == "succeeded", inc.error
    assert inc.level == "incremental"
    incremental, full_point = app.recovery_points(job="guest")
    yield Guest(
        app=app,
        full=full_point.id,
        incremental=incremental.id,
        sums=sums,
        changed="report.bin",
        changed_sum=sha256(new),
        source=source,
        raw=raw,
    )
    app.close()


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Appliance]:
    """A fresh appliance of its own (for tests that back up disks of their own)."""
    appliance = open_appliance(tmp_path)
    yield appliance
    appliance.close()


def back_up(app: Appliance, image: Path, job: str) -> str:
    """A full backup of one image file through the imagefile plugin; the point's id."""
    app.create_job(job, "imagefile", "default", options={"images": [str(image)], "name": job})
    run = app.run_job(job, level="full")
    assert run.state == "succeeded", run.error
    (point,) = app.recovery_points(job=job)
    return point.id
