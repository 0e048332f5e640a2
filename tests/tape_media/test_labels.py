"""Inventory and labelling against the real tgt library: rows from the inventory, bulk
labels read back from the tapes, and refusals of another pool's or a foreign tape."""

from __future__ import annotations

from vtl import VirtualLibrary

from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_api import VolumeInfo
from tapir.hardware.changer import MediaChanger
from tapir.hardware.drive import TapeDrive
from tapir.plugins.tape.labels import read_media_label

from .conftest import Tapir, as_json, make_tape_pool, volumes


def label_on_tape(vtl: VirtualLibrary, slot: int):
    """The media label of the cartridge in ``slot`` (loaded into drive 1 and put back)."""
    with MediaChanger.open(vtl.changer_url) as changer:
        changer.load(slot, 1)
        try:
            with TapeDrive.open(vtl.drive_urls[1], block_size=0) as drive:
                drive.wait_ready(timeout=10)
                drive.set_block_size(0)
                return read_media_label(drive, 65536)
        finally:
            changer.unload(1, slot)


def test_inventory_creates_rows_moves_and_marks_offline(
    tapir: Tapir, app: Appliance, vtl: VirtualLibrary
) -> None:
    report = as_json(tapir("tape", "inventory", "--changer", "lib1", "--json"))
    assert sorted(report["created"]) == [
        "NEW001L8",
        "SML001L8",
        "SML002L8",
        "SPR001L8",
        "TAP001L8",
        "TAP002L8",
        "TAP003L8",
        "TAP004L8",
        "WRM001LY",
    ]
    assert report["cleaning_created"] == ["CLN001L1"]
    rows = volumes(tapir)
    assert rows["CLN001L1"]["state"] == "cleaning" and rows["CLN001L1"]["cleaning"]
    assert rows["CLN001L1"]["cleaning_uses"] == 0 and rows["CLN001L1"]["location"] == "slot 12"
    tap = rows["TAP003L8"]
    assert (tap["state"], tap["pool"], tap["labeled"], tap["location"]) == (
        "scratch",
        None,
        False,
        "slot 3",
    )
    assert tap["media_type"] == "LTO-8" and not tap["worm"]
    assert rows["WRM001LY"]["worm"] and rows["WRM001LY"]["media_type"] == "LTO-8 WORM"
    assert rows["NEW001L8"]["location"] == "mail 1"

    # A cartridge moved by hand, and one the catalog knows that left the library.
    with MediaChanger.open(vtl.changer_url) as changer:
        changer.transfer(3, 10)
    registry = app.plugin_context("tape").volumes
    assert registry is not None
    registry.save(VolumeInfo(label="GONE01L8", location="slot 11"))
    registry.save(VolumeInfo(label="AWAY01L8", location="vault: bank"))
    again = as_json(tapir("tape", "inventory", "--changer", "lib1", "--json"))
    assert again["created"] == [] and again["offline"] == ["GONE01L8"]
    assert again["moved"] == [{"barcode": "TAP003L8", "from": "slot 3", "to": "slot 10"}]
    rows = volumes(tapir)
    assert rows["GONE01L8"]["location"] == "offline"
    assert rows["AWAY01L8"]["location"] == "vault: bank"  # a vault note is not overwritten
    text = tapir("tape", "volumes", "--state", "cleaning").stdout
    assert "CLN001L1" in text and "TAP001L8" not in text


def test_label_all_new_in_bulk(tapir: Tapir, vtl: VirtualLibrary) -> None:
    make_tape_pool(tapir, "tp")
    result = tapir("tape", "label", "--all-new", "--changer", "lib1", "--pool", "tp", "--json")
    outcomes = {o["barcode"]: o for o in as_json(result)}
    # Every data cartridge, the one in the mail slot included; never the cleaner.
    assert set(outcomes) == {
        "NEW001L8",
        "SML001L8",
        "SML002L8",
        "SPR001L8",
        "TAP001L8",
        "TAP002L8",
        "TAP003L8",
        "TAP004L8",
        "WRM001LY",
    }
    assert {o["status"] for o in outcomes.values()} == {"labelled"}
    rows = volumes(tapir, "--pool", "tp")
    assert set(rows) == set(outcomes)
    for row in rows.values():
        assert row["state"] == "scratch" and row["labeled"] and row["uuid"]
        assert row["location"].startswith("slot "), row  # put back after labelling
    on_tape = label_on_tape(vtl, 2)
    assert on_tape is not None
    assert (on_tape.barcode, on_tape.pool, on_tape.volume) == (
        "TAP002L8",
        "tp",
        rows["TAP002L8"]["uuid"],
    )
    assert on_tape.block_size == 65536
    # Nothing is new any more.
    again = tapir("tape", "label", "--all-new", "--changer", "lib1", "--pool", "tp")
    assert "no new cartridges" in again.stdout


def test_refuses_another_pools_tape_and_a_foreign_tape_unless_forced(
    tapir: Tapir, app: Appliance, vtl: VirtualLibrary
) -> None:
    make_tape_pool(tapir, "alpha")
    make_tape_pool(tapir, "beta")
    tapir("tape", "label", "TAP001L8", "--changer", "lib1", "--pool", "alpha")
    first = volumes(tapir)["TAP001L8"]

    refused = tapir("tape", "label", "TAP001L8", "--changer", "lib1", "--pool", "beta", code=1)
    assert "labelled for pool alpha" in refused.stdout and "--force" in refused.stdout
    assert "not labelled: TAP001L8" in refused.stderr
    assert volumes(tapir)["TAP001L8"] == first
    on_tape = label_on_tape(vtl, 1)
    assert on_tape is not None and on_tape.pool == "alpha"

    forced = tapir("tape", "label", "TAP001L8", "--changer", "lib1", "--pool", "beta", "--force")
    assert "FORCED TAP001L8: labelled" in forced.stdout
    row = volumes(tapir)["TAP001L8"]
    assert row["pool"] == "beta" and row["uuid"] == first["uuid"]
    assert "relabelled with --force" in row["note"]
    on_tape = label_on_tape(vtl, 1)
    assert on_tape is not None and on_tape.pool == "beta"

    # A foreign recording: another program's blocks at the start of the tape.
    with MediaChanger.open(vtl.changer_url) as changer:
        changer.load(2, 0)
        with TapeDrive.open(vtl.drive_urls[0], block_size=0) as drive:
            drive.wait_ready(timeout=10)
            drive.set_block_size(0)
            drive.rewind()
            drive.write(b"TAR archive of someone else " * 1000)
            drive.write_filemarks(1)
            drive.unload()
        changer.unload(0, 2)
    refused = tapir("tape", "label", "TAP002L8", "--changer", "lib1", "--pool", "alpha", code=1)
    assert "not blank and not Tapir's" in refused.stdout
    assert not volumes(tapir)["TAP002L8"]["labeled"]
    tapir("tape", "label", "TAP002L8", "--changer", "lib1", "--pool", "alpha", "--force")
    assert volumes(tapir)["TAP002L8"]["labeled"]
    on_tape = label_on_tape(vtl, 2)
    assert on_tape is not None and on_tape.pool == "alpha"

    # The forced relabels are in the audit log with what the tape carried before.
    notes = [
        str(e.details)
        for e in app.audit_events(200)
        if e.action == "volume.update" and e.target in ("TAP001L8", "TAP002L8")
    ]
    assert any("relabelled with --force" in n and "pool alpha" in n for n in notes)
    assert any("relabelled with --force" in n and "not Tapir" in n for n in notes)


def test_bad_input_is_refused_with_one_line(tapir: Tapir) -> None:
    make_tape_pool(tapir, "tp")
    result = tapir("tape", "label", "--changer", "lib1", "--pool", "tp", code=2)
    assert "BARCODE(s) or --all-new" in result.stderr
    result = tapir("tape", "label", "X", "--changer", "lib1", code=2)
    assert "--pool NAME and --scratch" in result.stderr
    result = tapir("tape", "label", "NOPE01L8", "--changer", "lib1", "--pool", "tp", code=1)
    assert "NOPE01L8: refused: unknown barcode" in result.stdout
    result = tapir("tape", "label", "--all-new", "--changer", "nolib", "--pool", "tp", code=1)
    assert result.stderr == "error: no changer named 'nolib'\n"
    result = tapir("tape", "label", "CLN001L1", "--changer", "lib1", "--pool", "tp", code=1)
    assert "cleaning cartridge cannot be labelled" in result.stdout
    result = tapir("tape", "inventory", "--changer", "lib1-d0", code=1)
    assert result.stderr == "error: device 'lib1-d0' is a drive, not a changer\n"
    result = tapir("tape", "volumes", "--state", "lost", code=2)
    assert "'lost' is not one of" in result.stderr
    result = tapir("tape", "volumes", "--pool", "nosuch", code=1)
    assert result.stderr.strip() == "error: no pool named 'nosuch'"
    result = tapir("tape", "label", "TAP001L8", "--changer", "lib1", "--pool", "default", code=1)
    assert "not a tape pool" in result.stderr
