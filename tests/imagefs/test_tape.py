"""Single files from an image point on a tape pool (a real tgt library): the reader
locates the archive files it needs; nothing else changes."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_api import VolumeInfo

from .conftest import open_appliance
from .content import file_sha256, make_tree
from .disks import MiB, Part, build_disk

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vtl import Cartridge, start_library


@pytest.fixture
def tape_app(tmp_path: Path) -> Iterator[Appliance]:
    lib, stop = start_library(tmp_path / "vtl", cartridges=[Cartridge("IMG001L8", slot=1)])
    try:
        app = open_appliance(tmp_path)
        app.register_device("lib1", "changer", lib.changer_url)
        for number, url in enumerate(lib.drive_urls):
            app.register_device(
                f"lib1-d{number}", "drive", url, changer="lib1", drive_number=number
            )
        volumes = app.plugin_context("tape").volumes
        assert volumes is not None
        volumes.save(VolumeInfo(label="IMG001L8", pool=None, state="scratch", location="slot 1"))
        app.create_pool(
            "tape", "tape", options={"changer": "lib1", "drives": "lib1-d0", "block_size": 65536}
        )
        yield app
        app.close()
    finally:
        stop()


def test_files_restore_from_an_image_point_on_tape(tape_app: Appliance, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    sums = make_tree(src)
    disk = build_disk(tmp_path / "t.raw", 48 * MiB, [Part("ext4", 32 * MiB, src)])
    tape_app.create_job("vm", "imagefile", "tape", options={"images": [str(disk)]})
    run = tape_app.run_job("vm", level="full")
    assert run.state == "succeeded", run.error
    (point,) = tape_app.recovery_points(job="vm")
    with tape_app.image_files(point.id) as files:
        assert [v.fs for v in files.volumes("0")] == ["ext"]
        names = {e.name for e in files.ls("0:1/home/user/Документы")}
    assert names == {"план.txt"}
    tape_app.restore_image_files(point.id, ["0:1/report.bin", "0:1/etc"], tmp_path / "out")
    assert file_sha256(tmp_path / "out" / "report.bin") == sums["report.bin"]
    assert (tmp_path / "out" / "etc" / "hostname").read_bytes() == b"web1\n"
