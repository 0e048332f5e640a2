"""Damaged file systems, damaged chunks, disks without file systems, non-image points."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tapir.appliance.engine.service import Appliance
from tapir.appliance.imagefs import ImageFsError
from tapir.appliance.plugin_api import TapirError

from .conftest import back_up
from .content import make_tree
from .disks import MiB, Part, build_disk

EXT4_AT = MiB


def _ext4_disk(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    make_tree(src)
    return build_disk(tmp_path / "d.raw", 64 * MiB, [Part("ext4", 32 * MiB, src)], table="dos")


def _overwrite(path: Path, offset: int, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


def test_a_damaged_superblock_is_a_clear_error(app: Appliance, tmp_path: Path) -> None:
    disk = _ext4_disk(tmp_path)
    _overwrite(disk, EXT4_AT + 1024, bytes(1024))  # the primary superblock
    point = back_up(app, disk, "broken")
    with app.image_files(point) as files:
        (volume,) = files.volumes("0")
        assert volume.fs is None
        assert "no file system Tapir can read" in (volume.error or "")
        with pytest.raises(ImageFsError, match=r"volume 1: no file system Tapir can read"):
            files.ls("0:1/")


def test_damaged_metadata_is_a_clear_error_naming_the_path(app: Appliance, tmp_path: Path) -> None:
    disk = _ext4_disk(tmp_path)
    # The group descriptors (after the superblock, 1 KiB blocks): the inode tables'
    # places are lost, so opening the root folder reads garbage.
    _overwrite(disk, EXT4_AT + 2048, random.Random(5).randbytes(1024))
    point = back_up(app, disk, "scrambled")
    with app.image_files(point) as files, pytest.raises(ImageFsError) as info:
        files.ls("0:1/etc")
    # Not "no such file": the folder above it is named, and why.
    assert str(info.value).startswith("0-d.raw:1/: the file system is damaged or not readable")
    assert "Group descriptor" in str(info.value)


def test_a_damaged_chunk_surfaces_as_itself(app: Appliance, tmp_path: Path) -> None:
    disk = _ext4_disk(tmp_path)
    point = back_up(app, disk, "rot")
    packs = [p for p in (app.settings.pools_dir / "default" / "packs").rglob("*") if p.is_file()]
    assert packs
    for pack in packs:
        size = pack.stat().st_size
        with open(pack, "r+b") as f:
            for offset in range(64, size, 4096):  # payload bytes of every entry
                f.seek(offset)
                byte = f.read(1)
                f.seek(offset)
                f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(TapirError) as info, app.image_files(point) as files:
        files.ls("0:1/")
    assert not isinstance(info.value, ImageFsError)  # not mistaken for a damaged file system
    assert "chunk" in str(info.value) or "pack" in str(info.value), info.value


def test_a_disk_without_any_file_system(app: Appliance, tmp_path: Path) -> None:
    disk = tmp_path / "blank.raw"
    with open(disk, "wb") as f:
        f.write(random.Random(1).randbytes(MiB))
        f.truncate(8 * MiB)
    point = back_up(app, disk, "blank")
    with app.image_files(point) as files:
        assert files.disk("0").table is None
        (whole,) = files.volumes("0")
        assert (whole.name, whole.kind, whole.fs) == ("0", "disk", None)
        with pytest.raises(ImageFsError, match="volume 0: no file system"):
            files.ls("0:0/")


def test_a_point_without_disks_is_refused(app: Appliance, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "f.txt").write_text("x")
    app.create_job("plain", "files", "default", options={"paths": [str(tmp_path / "data")]})
    assert app.run_job("plain", level="full").state == "succeeded"
    (point,) = app.recovery_points(job="plain")
    with app.image_files(point.id) as files, pytest.raises(ImageFsError, match="no disk images"):
        files.ls("0:1/")


@pytest.mark.parametrize(
    ("address", "message"),
    [(":1/x", "has no disk"), ("0:/x", "has no volume")],
)
def test_malformed_addresses(app: Appliance, address: str, message: str) -> None:
    from tapir.appliance.imagefs import parse_address

    with pytest.raises(ValueError, match=message):
        parse_address(address)
