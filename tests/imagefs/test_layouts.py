"""Other disk layouts: an MBR table, a file system on the whole disk, and a large file at
the end of a multi-GiB sparse disk."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

from tapir.appliance.engine.service import Appliance

from .conftest import back_up
from .content import file_sha256, make_tree
from .disks import GiB, MiB, Part, build_disk, make_fs, make_whole_fs, qcow2
from .lvm import write_pv


def test_mbr_disk_with_ext4_ntfs_and_fat(app: Appliance, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    sums = make_tree(src, links=False)
    parts = [Part("ext4", 24 * MiB, src), Part("ntfs", 16 * MiB, src), Part("fat", 40 * MiB, src)]
    disk = build_disk(tmp_path / "mbr.raw", 96 * MiB, parts, table="dos")
    point = back_up(app, qcow2(disk, tmp_path / "mbr.qcow2"), "mbr")
    with app.image_files(point) as files:
        assert files.disk("0").table == "mbr"
        assert [(v.name, v.fs) for v in files.volumes("0")] == [
            ("1", "ext"),
            ("2", "ntfs"),
            ("3", "fat"),
        ]
    for volume, name in (("1", "report.bin"), ("2", "report.bin"), ("3", "REPORT.BIN")):
        target = tmp_path / f"out{volume}"
        app.restore_image_files(point, [f"0:{volume}/{name}"], target)
        assert file_sha256(target / name) == sums["report.bin"]


def test_file_system_on_the_whole_disk(app: Appliance, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    sums = make_tree(src)
    disk = make_whole_fs(tmp_path / "whole.raw", Part("xfs", 300 * MiB, src))
    point = back_up(app, disk, "whole")
    with app.image_files(point) as files:
        assert files.disk("0").table is None
        (volume,) = files.volumes("0")
        assert (volume.name, volume.kind, volume.fs) == ("0", "disk", "xfs")
        with files.open("0:0/home/user/Документы/план.txt") as fh:
            assert hashlib.sha256(fh.read()).hexdigest() == sums["home/user/Документы/план.txt"]


def test_large_file_at_the_end_of_a_multi_gib_sparse_disk(app: Appliance, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    big = src / "big.bin"
    tail = random.Random(8).randbytes(3 * MiB)
    with open(big, "wb") as f:  # 48 MiB: a hole, then data up to its very end
        f.truncate(48 * MiB)
        f.seek(48 * MiB - len(tail))
        f.write(tail)
    (src / "note.txt").write_text("last partition\n")
    expected = file_sha256(big)
    size = 6 * GiB
    part = Part("ext4", 64 * MiB, src, offset=size - 64 * MiB - MiB)  # room for GPT's backup
    disk = build_disk(tmp_path / "big.raw", size, [part])
    assert disk.stat().st_blocks * 512 < 64 * MiB  # sparse on the host too
    point = back_up(app, qcow2(disk, tmp_path / "big.qcow2"), "big")
    report = app.restore_image_files(point, ["0:1/big.bin"], tmp_path / "out")
    restored = tmp_path / "out" / "big.bin"
    assert report.files == 1 and report.bytes == 48 * MiB
    assert file_sha256(restored) == expected
    assert os.stat(restored).st_blocks * 512 < 8 * MiB  # restored sparse


def test_lvm_logical_volumes_on_a_partition(app: Appliance, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    sums = make_tree(src)
    root_fs, home_fs = tmp_path / "root.fs", tmp_path / "home.fs"
    make_fs(Part("ext4", 32 * MiB, src), root_fs, 0)
    make_fs(Part("xfs", 300 * MiB, src), home_fs, 0)
    pv = tmp_path / "pv.img"
    write_pv(pv, 400 * MiB, "vg-data", [("root", root_fs, 32 * MiB), ("home", home_fs, 300 * MiB)])
    parts = [Part("ext4", 16 * MiB, src), Part("prebuilt", 400 * MiB, pv)]
    disk = build_disk(tmp_path / "lvm.raw", 420 * MiB, parts)
    point = back_up(app, disk, "lvm")
    with app.image_files(point) as files:
        volumes = {v.name: (v.kind, v.fs) for v in files.volumes("0")}
        # The PV itself is listed, without a file system; LVM doubles '-' in names.
        assert volumes == {
            "1": ("partition", "ext"),
            "2": ("partition", None),
            "vg--data-root": ("lvm", "ext"),
            "vg--data-home": ("lvm", "xfs"),
        }
        assert "LVM2 physical volume" in (files.volumes("0")[1].error or "")
    app.restore_image_files(point, ["0:vg--data-home/report.bin"], tmp_path / "out")
    assert file_sha256(tmp_path / "out" / "report.bin") == sums["report.bin"]
