"""The operator CLI against the tgt library, through click's test runner."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner
from vtl import VirtualLibrary

from tapir.hardware.cli import register


@pytest.fixture
def tapir() -> click.Group:
    @click.group()
    def root() -> None:
        """Stand-in for the tapir root command."""

    register(root)
    return root


def _run(tapir: click.Group, *args: str) -> click.testing.Result:
    return CliRunner().invoke(tapir, list(args), catch_exceptions=False)


def test_inventory_table_and_json(tapir: click.Group, vtl: VirtualLibrary) -> None:
    r = _run(tapir, "changer", "inventory", "--device", vtl.changer_url)
    assert r.exit_code == 0, r.output
    assert "TAP001L8" in r.output and "cleaning" in r.output and "slot 12" in r.output
    r = _run(tapir, "changer", "inventory", "--device", vtl.changer_url, "--json")
    data = json.loads(r.output)
    first = data["slots"][0]
    assert (first["number"], first["address"], first["full"], first["barcode"]) == (
        1,
        vtl.storage_addresses[0],
        True,
        "TAP001L8",
    )
    assert data["mail_slots"][0]["barcode"] == "TAP010L8"
    assert data["drives"][0]["serial"] == "VDRV0000"


def test_moves_and_drive_commands(tapir: click.Group, vtl: VirtualLibrary) -> None:
    dev = ("--device", vtl.changer_url)
    assert _run(tapir, "changer", "load", *dev, "2", "1").output.strip() == "slot 2 -> drive 1"
    r = _run(tapir, "drive", "status", "--device", vtl.drive_urls[1], "--json")
    st = json.loads(r.output)
    assert st["medium_present"] and st["serial"] == "VDRV0001" and not st["write_protected"]
    assert _run(tapir, "drive", "rewind", "--device", vtl.drive_urls[1]).exit_code == 0
    assert _run(tapir, "drive", "eject", "--device", vtl.drive_urls[1]).exit_code == 0
    assert "drive 1 -> slot 2" in _run(tapir, "changer", "unload", *dev, "1").output
    assert "mail 1 -> slot 10" in _run(tapir, "changer", "import", *dev, "1").output
    assert "slot 10 -> mail 1" in _run(tapir, "changer", "export", *dev, "10").output
    assert "slot:3 -> slot:11" in _run(tapir, "changer", "move", *dev, "slot:3", "slot:11").output
    status = json.loads(_run(tapir, "changer", "status", *dev, "--json").output)
    assert status["slots"] == {"total": 12, "full": 10}
    assert status["mail_slots"] == {"total": 2, "full": 1}


def test_errors_are_one_line_and_exit_1(tapir: click.Group, vtl: VirtualLibrary) -> None:
    r = CliRunner().invoke(tapir, ["changer", "load", "--device", vtl.changer_url, "10"])
    assert r.exit_code == 1 and "slot 10 is empty" in r.output
    r = CliRunner().invoke(tapir, ["drive", "tapealert", "--device", vtl.drive_urls[0]])
    assert r.exit_code == 1 and "LOG SENSE" in r.output
    r = CliRunner().invoke(tapir, ["changer", "status", "--device", "changer0"])
    assert r.exit_code == 1 and "unknown device" in r.output
    r = CliRunner().invoke(tapir, ["changer", "move", "--device", vtl.changer_url, "x", "y"])
    assert r.exit_code == 1 and "bad element" in r.output


def test_scan_lists_iscsi_luns(tapir: click.Group, vtl: VirtualLibrary) -> None:
    base = f"iscsi://{vtl.portal}/{vtl.target}"
    rows = json.loads(_run(tapir, "hw", "scan", "--iscsi", base, "--json").output)
    iscsi = [(r["device"], r["kind"]) for r in rows if r["attached"] == "iscsi"]
    assert iscsi == [
        (vtl.drive_urls[0], "tape"),
        (vtl.drive_urls[1], "tape"),
        (vtl.changer_url, "changer"),
    ]


def test_clean_cycle_returns_the_cleaner(tapir: click.Group, vtl: VirtualLibrary) -> None:
    r = _run(
        tapir,
        "drive",
        "clean",
        "--device",
        vtl.drive_urls[0],
        "--changer",
        vtl.changer_url,
        "--drive",
        "0",
        "--timeout",
        "20",
    )
    assert r.exit_code == 0 and "CLN001L1" in r.output
    inv = json.loads(
        _run(tapir, "changer", "inventory", "--device", vtl.changer_url, "--json").output
    )
    assert inv["slots"][11]["barcode"] == "CLN001L1" and not inv["drives"][0]["full"]
