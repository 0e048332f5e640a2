"""``tapir files ls|find|get`` against the backed-up guest."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tapir.appliance.cli.main import build_cli
from tapir.appliance.plugin_manager import load_plugins

from .conftest import Guest
from .content import UNICODE, file_sha256, sha256


@pytest.fixture
def tapir(guest: Guest, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TAPIR_HOME", str(guest.app.settings.home))
    monkeypatch.setenv("TAPIR_DATABASE_URL", guest.app.settings.database_url)
    cli = build_cli(load_plugins())

    def run(*args: str) -> Result:
        return CliRunner().invoke(cli, list(args), catch_exceptions=False)

    return run


def test_files_is_a_command_of_its_own(tapir) -> None:
    result = tapir("files", "--help")
    assert result.exit_code == 0
    assert "ls" in result.output and "find" in result.output and "get" in result.output


def test_ls_disks_volumes_and_a_folder(tapir, guest: Guest) -> None:
    disks = tapir("files", "ls", guest.full)
    assert disks.exit_code == 0, disks.output
    assert "0-guest.qcow2" in disks.output and "gpt" in disks.output
    volumes = json.loads(tapir("files", "ls", guest.full, "0", "--json").output)
    assert [v["fs"] for v in volumes] == ["ext", "ntfs", "fat", "xfs", "btrfs"]
    folder = tapir("files", "ls", "guest:latest", "0:1/etc/app")
    assert folder.exit_code == 0, folder.output
    assert "-rw-r-----" in folder.output and "config.ini" in folder.output
    entries = json.loads(tapir("files", "ls", guest.full, "0:1/", "--json").output)
    link = next(e for e in entries if e["name"] == "hostname-link")
    assert (link["kind"], link["target"]) == ("symlink", "etc/hostname")


def test_find(tapir, guest: Guest) -> None:
    result = tapir("files", "find", guest.full, "0:4/", "*.txt", "--json")
    found = [f["address"] for f in json.loads(result.output)]
    assert f"0:4/{UNICODE}" in found and "0:4/home/user/Документы/план.txt" in found


def test_get_to_a_folder_then_refuses_to_overwrite(tapir, guest: Guest, tmp_path: Path) -> None:
    result = tapir("files", "get", guest.incremental, "0:1/report.bin", "--to", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert file_sha256(tmp_path / "report.bin") == guest.changed_sum
    again = CliRunner().invoke(
        build_cli(load_plugins()),
        ["files", "get", guest.incremental, "0:1/report.bin", "--to", str(tmp_path)],
    )
    assert again.exit_code == 1
    assert "error: not overwriting existing files" in again.output


def test_get_as_tar_to_stdout_and_to_a_file(tapir, guest: Guest, tmp_path: Path) -> None:
    result = tapir("files", "get", guest.full, "0:5/etc", "--tar", "-")
    assert result.exit_code == 0
    with tarfile.open(fileobj=io.BytesIO(result.stdout_bytes)) as tar:
        hostname = tar.extractfile("etc/hostname")
        assert hostname is not None and hostname.read() == b"web1\n"
    out = tmp_path / "files.zip"
    result = tapir("files", "get", guest.full, "0:2/report.bin", "--zip", str(out))
    assert result.exit_code == 0 and out.exists()
    with zipfile.ZipFile(out) as archive:
        assert sha256(archive.read("report.bin")) == guest.sums["report.bin"]


def test_get_needs_exactly_one_destination(tapir, guest: Guest) -> None:
    result = CliRunner().invoke(build_cli(load_plugins()), ["files", "get", guest.full, "0:1/x"])
    assert result.exit_code == 2
    assert "choose exactly one of --to FOLDER, --tar FILE, --zip FILE" in result.output


def test_unknown_path_is_one_error_line(tapir, guest: Guest) -> None:
    result = CliRunner().invoke(build_cli(load_plugins()), ["files", "ls", guest.full, "0:1/nope"])
    assert result.exit_code == 1
    assert result.output.strip().endswith("0-guest.qcow2:1/nope: no such file or folder")
