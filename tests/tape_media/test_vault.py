"""Vaulting on the real library: export a media set to the mail slots (those that do not
fit are reported), the vault report, import back; and cleaning a drive."""

from __future__ import annotations

from pathlib import Path

from vtl import VirtualLibrary

from tapir.appliance.engine.service import Appliance
from tapir.hardware.changer import MediaChanger

from .conftest import Tapir, as_json, make_tape_pool, make_tree, volumes


def test_export_vault_report_and_import(
    app: Appliance, tapir: Tapir, vtl: VirtualLibrary, tmp_path: Path
) -> None:
    tapir("tape", "import", "--changer", "lib1")  # NEW001L8 out of mail slot 1
    make_tape_pool(tapir, "tp", "retention_days=30")
    tapir("tape", "label", "TAP001L8", "TAP002L8", "--changer", "lib1", "--pool", "tp")
    source = make_tree(tmp_path / "src", 128 << 10)
    app.create_job("home", "files", "tp", options={"paths": [str(source)]})
    assert app.run_job("home").state == "succeeded"
    [rp] = app.recovery_points(job="home")
    media_set = volumes(tapir, "--pool", "tp")["TAP001L8"]["media_set"]

    # Both mail slots taken: nothing can go out, and the report says so.
    with MediaChanger.open(vtl.changer_url) as changer:
        changer.export(3, 1)
        changer.export(4, 2)
    report = as_json(
        tapir("tape", "export", "--pool", "tp", "--current", "--changer", "lib1", "--json")
    )
    assert report["exported"] == [] and report["sealed"]
    assert report["remaining"] == [{"barcode": "TAP001L8", "reason": "no free mail slot"}]
    assert volumes(tapir)["TAP001L8"]["location"] == "slot 1"
    assert volumes(tapir)["TAP001L8"]["state"] == "full"  # sealed: no backup appends to it

    with MediaChanger.open(vtl.changer_url) as changer:
        changer.import_(1, 3)
        changer.import_(2, 4)
    out = tapir(
        "tape",
        "export",
        "--pool",
        "tp",
        "--media-set",
        media_set,
        "--changer",
        "lib1",
        "--note",
        "Iron Mountain box 12",
    )
    assert "TAP001L8 -> mail slot 1" in out.stdout
    row = volumes(tapir)["TAP001L8"]
    assert row["location"] == "vault: Iron Mountain box 12"
    with MediaChanger.open(vtl.changer_url) as changer:
        assert changer.inventory().mail_slots[0].barcode == "TAP001L8"

    [entry] = as_json(tapir("tape", "vault-report", "--json"))
    assert (entry["barcode"], entry["pool"], entry["media_set"]) == ("TAP001L8", "tp", media_set)
    assert entry["location"] == "vault: Iron Mountain box 12"
    assert entry["expiry_rule"] == "30 day(s) after the set's last write"
    assert entry["expires_at"] is not None
    [point] = entry["recovery_points"]
    assert point["id"] == rp.id and point["asset"] == rp.asset.name and point["job"] == "home"
    table = tapir("tape", "vault-report", "--pool", "tp").stdout
    assert "TAP001L8" in table and rp.asset.name in table

    # The next backup starts a new media set on a cartridge still in the library (a
    # job of its own: an incremental would read its parent's items from the vaulted set).
    app.create_job("other", "files", "tp", options={"paths": [str(source)]})
    assert app.run_job("other").state == "succeeded"
    assert volumes(tapir)["TAP002L8"]["media_set"] not in (None, media_set)

    back = as_json(tapir("tape", "import", "--changer", "lib1", "--json"))
    assert [i["barcode"] for i in back["imported"]] == ["TAP001L8"]
    slot = back["imported"][0]["slot"]
    assert volumes(tapir)["TAP001L8"]["location"] == f"slot {slot}"
    assert as_json(tapir("tape", "vault-report", "--json")) == []
    assert "the mail slots are empty" in tapir("tape", "import", "--changer", "lib1").stdout

    result = tapir("tape", "export", "--pool", "tp", "--changer", "lib1", code=2)
    assert "--media-set UUID and --current" in result.stderr
    result = tapir(
        "tape", "export", "--pool", "tp", "--media-set", "0" * 32, "--changer", "lib1", code=1
    )
    assert result.stderr.startswith("error: pool tp has no media set " + "0" * 32)


def test_clean_counts_uses_and_retires_the_cleaner(tapir: Tapir) -> None:
    tapir("tape", "inventory", "--changer", "lib1")
    first = tapir("tape", "clean", "--changer", "lib1", "--drive", "lib1-d1", "--max-uses", "2")
    assert "cleaned lib1-d1 with CLN001L1 (use 1 of 2)" in first.stdout
    row = volumes(tapir)["CLN001L1"]
    assert (row["cleaning_uses"], row["state"], row["location"]) == (1, "cleaning", "slot 12")
    second = as_json(
        tapir(
            "tape", "clean", "--changer", "lib1", "--drive", "lib1-d0", "--max-uses", "2", "--json"
        )
    )
    assert second == {
        "drive": "lib1-d0",
        "cartridge": "CLN001L1",
        "uses": 2,
        "max_uses": 2,
        "retired": True,
    }
    assert volumes(tapir)["CLN001L1"]["state"] == "retired"
    refused = tapir("tape", "clean", "--changer", "lib1", "--drive", "lib1-d0", code=1)
    assert "no usable cleaning cartridge" in refused.stderr
    refused = tapir("tape", "clean", "--changer", "lib1", "--drive", "lib1", code=1)
    assert refused.stderr == "error: lib1 is not a drive of changer lib1\n"
