"""Restoring single files and folders from image points: to a folder, as tar or zip."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from tapir.appliance.imagefs import ImageFsError

from .conftest import Guest
from .content import DEEP, MTIME, UNICODE, file_sha256, sha256

# Where each test file lives per volume (FAT keeps short names in capitals; the NTFS
# partition holds the top-level files only, ntfscp cannot make folders).
NAMES = {
    "1": {"hello.txt": "hello.txt", UNICODE: UNICODE, "report.bin": "report.bin",
          "sparse.img": "sparse.img", "deep": f"{DEEP}/deep.txt"},
    "2": {"hello.txt": "hello.txt", UNICODE: UNICODE, "report.bin": "report.bin",
          "sparse.img": "sparse.img"},
    "3": {"hello.txt": "HELLO.TXT", UNICODE: UNICODE, "report.bin": "REPORT.BIN",
          "sparse.img": "SPARSE.IMG", "deep": f"{DEEP.upper()}/DEEP.TXT"},
    "4": {"hello.txt": "hello.txt", UNICODE: UNICODE, "report.bin": "report.bin",
          "sparse.img": "sparse.img", "deep": f"{DEEP}/deep.txt"},
    "5": {"hello.txt": "hello.txt", UNICODE: UNICODE, "report.bin": "report.bin",
          "sparse.img": "sparse.img", "deep": f"{DEEP}/deep.txt"},
}  # fmt: skip


@pytest.mark.parametrize("volume", sorted(NAMES))
def test_single_files_restore_from_full_and_incremental(
    guest: Guest, tmp_path: Path, volume: str
) -> None:
    for point in (guest.full, guest.incremental):
        for key, name in NAMES[volume].items():
            rel = f"{DEEP}/deep.txt" if key == "deep" else key
            target = tmp_path / point[:8] / key.replace("/", "_")
            guest.app.restore_image_files(point, [f"0:{volume}/{name}"], target)
            restored = target / name.rsplit("/", 1)[-1]
            expected = guest.sums[rel]
            if point == guest.incremental and volume == "1" and rel == guest.changed:
                expected = guest.changed_sum  # only the ext4 copy was rewritten
            assert file_sha256(restored) == expected, (point, volume, name)


def test_the_incremental_sees_the_rewritten_file_and_the_full_the_old_one(guest: Guest) -> None:
    sums = {}
    for point in (guest.full, guest.incremental):
        with guest.app.image_files(point) as files, files.open("0:1/report.bin") as fh:
            sums[point] = sha256(fh.read())
    assert sums[guest.full] == guest.sums["report.bin"]
    assert sums[guest.incremental] == guest.changed_sum != sums[guest.full]


def test_a_folder_restores_with_its_metadata(guest: Guest, tmp_path: Path) -> None:
    report = guest.app.restore_image_files(guest.full, ["0:1/"], tmp_path / "out")
    root = tmp_path / "out" / "0-1"
    assert report.files >= 9 and report.links == 1 and report.folders >= 20
    assert (root / "etc/hostname").read_bytes() == b"web1\n"
    config = (root / "etc/app/config.ini").stat()
    assert stat.S_IMODE(config.st_mode) == 0o640
    assert config.st_mtime == MTIME
    assert (root / "etc").stat().st_mtime == MTIME  # folders' times set after their contents
    owner = (root / "home/user").stat()
    assert (owner.st_uid, owner.st_gid) == (1000, 1000)
    assert os.readlink(root / "hostname-link") == "etc/hostname"
    assert (root / UNICODE).read_text() == "unicode content ✓\n"
    assert (root / DEEP / "deep.txt").read_bytes() == b"at the bottom\n"
    sparse = root / "sparse.img"
    assert file_sha256(sparse) == guest.sums["sparse.img"]
    assert sparse.stat().st_blocks * 512 < 1 << 20  # the hole stayed a hole
    assert not list(root.rglob("*.tapir-part"))


def test_existing_files_are_never_overwritten_unless_asked(guest: Guest, tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "hello.txt").write_bytes(b"mine")
    with pytest.raises(ImageFsError, match=r"not overwriting existing files.*hello\.txt"):
        guest.app.restore_image_files(guest.full, ["0:1/hello.txt", "0:1/etc"], target)
    assert (target / "hello.txt").read_bytes() == b"mine"
    assert not (target / "etc").exists()  # refused before anything was written
    guest.app.restore_image_files(guest.full, ["0:1/hello.txt"], target, overwrite=True)
    assert (target / "hello.txt").read_bytes() == b"hello from the guest\n"


def test_two_choices_with_one_name_are_refused(guest: Guest, tmp_path: Path) -> None:
    with pytest.raises(ImageFsError, match=r"would both be restored as 'hello\.txt'"):
        guest.app.restore_image_files(
            guest.full, ["0:1/hello.txt", "0:4/hello.txt"], tmp_path / "t"
        )


def test_a_relative_target_is_refused(guest: Guest) -> None:
    with pytest.raises(ValueError, match="absolute path"):
        guest.app.restore_image_files(guest.full, ["0:1/hello.txt"], Path("rel"))


def test_tar_stream_holds_files_folders_links_and_metadata(guest: Guest) -> None:
    data = b"".join(guest.app.image_archive(guest.incremental, ["0:1/etc", "0:1/report.bin"]))
    assert len(data) % tarfile.RECORDSIZE == 0
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
        assert names[:2] == ["etc", "etc/app"]
        config = tar.getmember("etc/app/config.ini")
        assert (config.mode, config.mtime) == (0o640, MTIME)
        report = tar.extractfile("report.bin")
        assert report is not None and sha256(report.read()) == guest.changed_sum
    link_tar = b"".join(guest.app.image_archive(guest.full, ["0:4/hostname-link"]))
    with tarfile.open(fileobj=io.BytesIO(link_tar)) as tar:
        link = tar.getmember("hostname-link")
    assert link.issym() and link.linkname == "etc/hostname"


def test_zip_stream_of_a_folder(guest: Guest) -> None:
    data = b"".join(guest.app.image_archive(guest.full, ["0:5/home"], "zip"))
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        text = archive.read("home/user/Документы/план.txt").decode()
    assert text == "план работ\n"


def test_plain_file_download_and_its_refusals(guest: Guest) -> None:
    data = b"".join(guest.app.image_archive(guest.full, ["0:2/report.bin"], "file"))
    assert sha256(data) == guest.sums["report.bin"]
    with pytest.raises(ValueError, match="is a dir; download it as tar or zip"):
        guest.app.image_archive(guest.full, ["0:1/etc"], "file")
    with pytest.raises(ValueError, match="unknown archive format 'rar'"):
        guest.app.image_archive(guest.full, ["0:1/etc"], "rar")
