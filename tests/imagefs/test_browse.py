"""Browsing and finding files in the disks of image recovery points."""

from __future__ import annotations

import stat

import pytest

from tapir.appliance.imagefs import ImageNotFound

from .conftest import VOLUMES, Guest
from .content import DEEP, MTIME, UNICODE


def test_disks_volumes_and_file_systems(guest: Guest) -> None:
    with guest.app.image_files(guest.full) as point:
        (disk,) = point.disks()
        assert disk.index == 0 and disk.name.endswith("guest.qcow2")
        assert point.disk("0").table == "gpt"
        volumes = point.volumes("0")
    assert {v.name: v.fs for v in volumes} == VOLUMES
    ext = volumes[0]
    assert (ext.kind, ext.offset, ext.size) == ("partition", 1 << 20, 32 << 20)


@pytest.mark.parametrize("volume", ["1", "4", "5"])
def test_ls_shows_sizes_times_owners_and_modes(guest: Guest, volume: str) -> None:
    with guest.app.image_files(guest.full) as point:
        root = {e.name: e for e in point.ls(f"0:{volume}/")}
        etc_app = {e.name: e for e in point.ls(f"0:{volume}/etc/app")}
        home = {e.name: e for e in point.ls(f"0:{volume}/home")}
    assert {"hello.txt", UNICODE, "etc", "home", "a", "sparse.img"} <= set(root)
    assert root["hello.txt"].kind == "file" and root["hello.txt"].size == 21
    assert root["etc"].kind == "dir"
    assert root["hostname-link"].kind == "symlink"
    assert root["hostname-link"].target == "etc/hostname"
    assert root["sparse.img"].size == 6 << 20
    config = etc_app["config.ini"]
    assert stat.S_IMODE(config.mode) == 0o640
    assert config.permissions() == "-rw-r-----"
    assert (home["user"].uid, home["user"].gid) == (1000, 1000)
    if volume != "4":  # mkfs.xfs prototype files do not carry times
        assert config.mtime == MTIME


def test_ntfs_and_fat_list_files_but_not_their_internals(guest: Guest) -> None:
    with guest.app.image_files(guest.full) as point:
        ntfs = [e.name for e in point.ls("0:2/")]
        fat = [e.name for e in point.ls("0:3/")]
    assert ntfs == sorted(ntfs) and UNICODE in ntfs and "hello.txt" in ntfs
    assert "$MFT" not in ntfs and "$Extend" not in ntfs  # metafiles stay hidden
    assert "$user-data.bin" in ntfs  # a user's file with a '$' name does not
    assert UNICODE in fat and "HELLO.TXT" in fat
    assert "FAT" not in fat  # the volume label entry is not a file


def test_a_file_address_lists_itself(guest: Guest) -> None:
    with guest.app.image_files(guest.full) as point:
        (entry,) = point.ls("0:1/etc/hostname")
    assert (entry.path, entry.size, entry.kind) == ("/etc/hostname", 5, "file")


def test_find_by_name_pattern_and_by_path(guest: Guest) -> None:
    with guest.app.image_files(guest.full) as point:
        by_name = [str(a) for a, _ in point.find("0:1/", "*.txt")]
        by_path = [str(a) for a, _ in point.find("0:4/", "/home/*/*/*")]
        fat = [str(a) for a, _ in point.find("0:3/", "deep.txt")]
    assert by_name == [
        f"0:1/{UNICODE}",
        f"0:1/{DEEP}/deep.txt",
        "0:1/hello.txt",
        "0:1/home/user/Документы/план.txt",
    ]
    assert by_path == ["0:4/home/user/Документы/план.txt"]
    # FAT ignores case: its short names are stored in capitals.
    assert fat == ["0:3/A/B/C/D/E/F/G/H/I/J/K/L/M/N/O/P/DEEP.TXT"]


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("7:1/", r"has no disk '7'; its disks: 0 \(0-guest.qcow2\)"),
        ("0:9/", r"has no volume '9'; its volumes: 1, 2, 3, 4, 5"),
        ("0:1/no/such/file", r"0-guest.qcow2:1/no/such/file: no such file or folder"),
        ("0:1/hello.txt/below", r"no such file or folder"),
    ],
)
def test_unknown_disk_volume_or_path_is_a_clear_error(
    guest: Guest, address: str, message: str
) -> None:
    with guest.app.image_files(guest.full) as point, pytest.raises(ImageNotFound, match=message):
        point.ls(address)


def test_dot_dot_never_leaves_the_volume(guest: Guest) -> None:
    with guest.app.image_files(guest.full) as point:
        assert point.stat("0:1/../../etc/../etc/hostname").path == "/etc/hostname"


def test_browsing_reads_a_few_chunks_not_the_disk(guest: Guest) -> None:
    with guest.app.image_files(guest.incremental) as point:
        point.ls("0:1/home/user")
        with point.open("0:1/hello.txt") as fh:
            assert fh.read() == b"hello from the guest\n"
        disk_size = point.disk("0").size
        assert point.bytes_read() < disk_size // 20
