"""The disaster recovery proof: back up to an encrypted tape pool spanning two cartridges,
lose the appliance (catalog, tape index, master key), rebuild on a new appliance from
the tapes alone plus the exported pool key, and restore byte for byte."""

from __future__ import annotations

import time
from pathlib import Path

from vtl import VirtualLibrary

from .conftest import (
    Tapir,
    as_json,
    make_tape_pool,
    make_tapir,
    make_tree,
    register_library,
    tree,
    volumes,
)

PASSPHRASE = "correct horse battery staple"


def test_rebuild_from_tapes_alone_and_restore(
    tapir: Tapir, vtl: VirtualLibrary, home: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE + "\n")
    keyfile = tmp_path / "tp.key"
    make_tape_pool(tapir, "tp", drives=("lib1-d0",), encrypt=True)
    tapir("pool", "key", "export", "tp", "--out", str(keyfile), "--passphrase-file", str(secret))
    tapir("tape", "label", "SML001L8", "SML002L8", "TAP001L8", "--changer", "lib1", "--pool", "tp")
    source = make_tree(tmp_path / "src", 3 << 20)
    tapir("job", "create", "home", "--plugin", "files", "--pool", "tp", "--path", str(source))
    tapir("job", "run", "home")
    [point] = as_json(tapir("backups", "--json"))
    before = volumes(tapir, "--pool", "tp")
    spanned = [b for b, v in before.items() if v["media_set"]]
    assert sorted(spanned) == ["SML001L8", "SML002L8"]  # the backup spans two cartridges

    # The appliance is lost: a new home, a new catalog, a new master key, no tape index.
    new_home = tmp_path / "new-home"
    register_library(new_home, vtl).close()
    fresh = make_tapir(new_home)
    assert as_json(fresh("backups", "--json")) == []

    result = fresh("tape", "catalog", "rebuild", "--changer", "lib1", "--json")
    report = as_json(result)
    by_barcode = {t["barcode"]: t for t in report["tapes"]}
    assert by_barcode["SML001L8"]["status"] == by_barcode["SML002L8"]["status"] == "media set"
    assert by_barcode["TAP001L8"]["status"] == "labelled"  # labelled, never written
    assert by_barcode["TAP002L8"]["status"] == "blank"
    [pool] = report["pools"]
    assert pool["pool"] == "tp" and pool["attached"] and pool["manifests"] == [point["id"]]
    assert pool["volumes"] == ["SML001L8", "SML002L8"] and pool["warnings"][-1].startswith(
        "recovery points not added yet"
    )
    assert "tapir pool key import tp KEYFILE" in " ".join(report["next_steps"])
    rows = volumes(fresh, "--pool", "tp")
    for barcode in ("SML001L8", "SML002L8", "TAP001L8"):
        old, new = before[barcode], rows[barcode]
        assert (new["uuid"], new["media_set"], new["media_set_seq"]) == (
            old["uuid"],
            old["media_set"],
            old["media_set_seq"],
        )
    assert rows["SML001L8"]["state"] == "full" and rows["TAP001L8"]["state"] == "scratch"

    fresh("pool", "key", "import", "tp", str(keyfile), "--passphrase-file", str(secret))
    rescan = as_json(fresh("pool", "rescan", "tp", "--json"))
    assert rescan["added"] == [point["id"]] and rescan["ok"]
    [again] = as_json(fresh("backups", "--json"))
    assert (again["id"], again["asset"], again["size"]) == (
        point["id"],
        point["asset"],
        point["size"],
    )
    target = tmp_path / "restored"
    fresh("restore", point["id"], "--to", str(target))
    found = [p.parent for p in target.rglob("data.bin")]
    assert len(found) == 1 and tree(found[0]) == tree(source)


def test_rebuild_of_an_unencrypted_pool_needs_no_further_step(
    tapir: Tapir, vtl: VirtualLibrary, tmp_path: Path
) -> None:
    make_tape_pool(tapir, "plain", "allocation=always-new", "retention_sets=2")
    tapir("tape", "label", "TAP003L8", "TAP004L8", "--changer", "lib1", "--pool", "plain")
    source = make_tree(tmp_path / "src", 64 << 10)
    for job in ("j1", "j2"):  # two full backups, two media sets
        if job == "j2":
            time.sleep(1.0)  # a media-set label records the second its set starts
        tapir("job", "create", job, "--plugin", "files", "--pool", "plain", "--path", str(source))
        tapir("job", "run", job)
    points = sorted(p["id"] for p in as_json(tapir("backups", "--json")))
    first_set = volumes(tapir)["TAP003L8"]["media_set"]

    # On the appliance itself, with one set's cartridge in the vault: the index knows
    # more than the library holds, so a rebuild is refused and nothing changes.
    tapir("tape", "export", "--pool", "plain", "--media-set", first_set, "--changer", "lib1")
    refused = tapir("tape", "catalog", "rebuild", "--changer", "lib1", "--pool", "plain", code=1)
    assert f"knows media set(s) {first_set} that no cartridge in the library holds" in (
        refused.stdout
    )
    assert sorted(p["id"] for p in as_json(tapir("backups", "--json"))) == points
    tapir("tape", "import", "--changer", "lib1")

    new_home = tmp_path / "new-home"
    register_library(new_home, vtl).close()
    fresh = make_tapir(new_home)
    # Without the attach: the rows wait, without a pool, and the steps are printed.
    text = fresh("tape", "catalog", "rebuild", "--changer", "lib1", "--no-attach").stdout
    assert "tapir pool attach plain --media tape --option changer=lib1" in text
    row = volumes(fresh)["TAP003L8"]
    assert (row["pool"], row["state"], row["labeled"]) == (None, "error", True)
    assert "attach the pool and rebuild again" in row["note"]
    text = fresh(
        "tape",
        "catalog",
        "rebuild",
        "--changer",
        "lib1",
        "--pool",
        "plain",
        "--option",
        "retention_sets=2",
        "--option",
        "allocation=always-new",
    ).stdout
    assert "pool attached, 2 recovery point(s) added to the catalog" in text
    assert "next steps" not in text
    rows = volumes(fresh, "--pool", "plain")
    assert (rows["TAP003L8"]["state"], rows["TAP003L8"]["media_set"]) == ("full", first_set)
    assert rows["TAP004L8"]["state"] == "writable"  # the newest set's last volume
    assert sorted(p["id"] for p in as_json(fresh("backups", "--json"))) == points
    shown = as_json(fresh("pool", "show", "plain", "--json"))
    assert shown["options"]["retention_sets"] == 2 and shown["options"]["changer"] == "lib1"
    for rp in points:
        target = tmp_path / f"restored-{rp}"
        fresh("restore", rp, "--to", str(target))
        found = [p.parent for p in target.rglob("data.bin")]
        assert len(found) == 1 and tree(found[0]) == tree(source)
