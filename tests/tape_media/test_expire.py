"""Retention expiry on real tapes: expired media sets return to scratch (and are written
again), a WORM volume is retired, a legal hold keeps its media set, the catalog's
recovery points on expired sets are pruned."""

from __future__ import annotations

from pathlib import Path

from tapir.appliance.engine.service import Appliance

from .conftest import Tapir, as_json, make_tape_pool, make_tree, volumes


def backup(app: Appliance, tapir: Tapir, job: str, source: Path, label: str) -> str:
    """Label ``label`` for pool tp, run a full backup ``job``; returns its recovery point.

    A job of its own each time: every backup is a full one, so no media set depends
    on another (incrementals across media sets are the store's business, not this test's).
    """
    tapir("tape", "label", label, "--changer", "lib1", "--pool", "tp")
    app.create_job(job, "files", "tp", options={"paths": [str(source)]})
    run = app.run_job(job)
    assert run.state == "succeeded", run.error
    return app.recovery_points(job=job)[0].id


def point_ids(tapir: Tapir) -> set[str]:
    return {p["id"] for p in as_json(tapir("backups", "--json"))}


def test_retention_returns_sets_to_scratch_retires_worm_and_keeps_holds(
    app: Appliance, tapir: Tapir, tmp_path: Path
) -> None:
    tapir("tape", "inventory", "--changer", "lib1")
    make_tape_pool(tapir, "tp", "allocation=always-new", "retention_sets=1")
    source = make_tree(tmp_path / "src", 256 << 10)
    rp1 = backup(app, tapir, "one", source, "WRM001LY")
    rp2 = backup(app, tapir, "two", source, "TAP001L8")
    rp3 = backup(app, tapir, "three", source, "TAP002L8")
    rows = volumes(tapir, "--pool", "tp")
    sets = {b: rows[b]["media_set"] for b in ("WRM001LY", "TAP001L8", "TAP002L8")}
    assert len(set(sets.values())) == 3
    assert rows["WRM001LY"]["state"] == rows["TAP001L8"]["state"] == "full"
    tapir("hold", rp2)

    dry = as_json(tapir("tape", "expire", "--pool", "tp", "--dry-run", "--json"))
    assert [s["media_set"] for s in dry["expired"]] == [sets["WRM001LY"]]
    assert dry["expired"][0]["recovery_points"] == [rp1]
    assert dry["expired"][0]["retired"] == ["WRM001LY"]
    assert [(s["media_set"], s["held_points"]) for s in dry["held"]] == [(sets["TAP001L8"], [rp2])]
    assert volumes(tapir, "--pool", "tp") == rows and point_ids(tapir) == {rp1, rp2, rp3}

    text = tapir("tape", "expire").stdout
    assert f"expired media set {sets['WRM001LY']}" in text
    assert "WORM volumes retired (never reused): WRM001LY" in text
    assert f"legal hold on {rp2}" in text
    rows = volumes(tapir, "--pool", "tp")
    assert rows["WRM001LY"]["state"] == "retired"
    assert rows["TAP001L8"]["state"] == "full"  # held back
    assert point_ids(tapir) == {rp2, rp3}

    tapir("unhold", rp2)
    report = as_json(tapir("tape", "expire", "--json"))
    assert [s["media_set"] for s in report["expired"]] == [sets["TAP001L8"]]
    assert report["pruned"] == {"tp": [rp2]}
    row = volumes(tapir, "--pool", "tp")["TAP001L8"]
    assert (row["state"], row["pool"], row["media_set"], row["labeled"]) == (
        "scratch",
        "tp",
        None,
        True,
    )
    assert point_ids(tapir) == {rp3}
    assert "no media set is due" in tapir("tape", "expire").stdout

    # The recycled cartridge is written again by the next backup (a new media set).
    app.create_job("four", "files", "tp", options={"paths": [str(source)]})
    run = app.run_job("four")
    assert run.state == "succeeded", run.error
    row = volumes(tapir, "--pool", "tp")["TAP001L8"]
    assert row["state"] == "writable" and row["media_set"] not in sets.values()
    assert volumes(tapir)["WRM001LY"]["state"] == "retired"


def test_expire_refuses_a_disk_pool_and_an_unknown_one(tapir: Tapir) -> None:
    result = tapir("tape", "expire", "--pool", "default", code=1)
    assert result.stderr == "error: pool default is a disk pool, not a tape pool\n"
    result = tapir("tape", "expire", "--pool", "nope", code=1)
    assert result.stderr == "error: no pool named 'nope'\n"
