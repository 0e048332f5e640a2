"""Rule-based jobs on the real engine: each run selects afresh from the catalog, after
rediscovering its endpoint, and logs the rule behind every asset."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from sqlalchemy import select, update

from tapir.appliance.catalog.models import Asset, Job, RunState
from tapir.appliance.engine.service import Appliance

from .conftest import HvHooks, log_of, vm_meta

PROD = "/DC0/vm/prod"


def rules_job(app: Appliance, name: str = "prod", **selection: object) -> None:
    app.create_job(
        name,
        "scripthv",
        "pool",
        endpoint="hv1",
        selection={
            "include": [f"folder={PROD}", "name=db-*"],
            "exclude": ["power_state=off"],
            **selection,
        },
    )


def test_a_vm_created_in_a_protected_folder_is_backed_up_by_the_next_run(
    app: Appliance, hv: HvHooks
) -> None:
    vms = hv.plugin.vms
    vms["1"] = ("web-01", vm_meta(PROD + "/web"))
    vms["2"] = ("test-01", vm_meta("/DC0/vm/test"))
    vms["3"] = ("web-02", vm_meta(PROD, "poweredOff"))
    vms["4"] = ("db-01", vm_meta("/DC0/vm/test"))
    rules_job(app)
    first = app.run_job("prod")
    assert first.state == RunState.SUCCEEDED, first.error
    assert sorted(hv.plugin.backed_up) == ["db-01", "web-01"]
    log = log_of(app, first.id)
    assert f"INFO web-01: selected by rule folder={PROD}" in log
    assert "INFO db-01: selected by rule name=db-*" in log
    assert f"INFO web-02: excluded by rule power_state=poweredOff (matched folder={PROD})" in log
    assert not any("test-01" in line for line in log)

    # Tomorrow: a new VM in the protected folder; nobody touches the job.
    vms["5"] = ("web-03", vm_meta(PROD + "/web/new"))
    hv.plugin.backed_up.clear()
    second = app.run_job("prod")
    assert second.state == RunState.SUCCEEDED, second.error
    assert sorted(hv.plugin.backed_up) == ["db-01", "web-01", "web-03"]
    assert f"INFO web-03: selected by rule folder={PROD}" in log_of(app, second.id)
    assert {rp.asset.name for rp in app.recovery_points(job="prod")} == {
        "db-01",
        "web-01",
        "web-03",
    }


def test_a_deleted_vm_is_marked_gone_not_selected_and_keeps_its_backups(
    app: Appliance, hv: HvHooks
) -> None:
    hv.plugin.vms = {"1": ("web-01", vm_meta(PROD)), "2": ("web-02", vm_meta(PROD))}
    rules_job(app)
    assert app.run_job("prod").state == RunState.SUCCEEDED
    del hv.plugin.vms["2"]
    hv.plugin.backed_up.clear()
    run = app.run_job("prod")
    assert run.state == RunState.SUCCEEDED, run.error
    assert hv.plugin.backed_up == ["web-01"]
    assert "INFO discovery of endpoint hv1: 1 found, 0 new, 1 gone" in log_of(app, run.id)
    gone = {a.name: a.present for a in app.endpoint_assets("hv1")}
    assert gone == {"web-01": True, "web-02": False}
    assert [rp.asset.name for rp in app.recovery_points(asset="web-02")] == ["web-02"]


def test_without_rediscovery_the_run_selects_from_the_catalog_as_it_is(
    lite_app: Appliance, hv: HvHooks
) -> None:
    hv.plugin.vms = {"1": ("web-01", vm_meta(PROD))}
    rules_job(lite_app, discover=False)
    # Nothing discovered yet: nothing to select; the run says so and warns.
    run = lite_app.run_job("prod")
    assert run.state == RunState.WARNING
    assert hv.plugin.discoveries == 0 and hv.plugin.backed_up == []
    assert "WARNING the rules of job prod selected no asset; nothing backed up" in log_of(
        lite_app, run.id
    )
    lite_app.discover_endpoint("hv1")
    hv.plugin.vms["2"] = ("web-02", vm_meta(PROD))  # not discovered yet
    assert lite_app.run_job("prod").state == RunState.SUCCEEDED
    assert hv.plugin.backed_up == ["web-01"]


def test_a_failed_rediscovery_warns_and_selects_from_the_last_discovery(
    lite_app: Appliance, hv: HvHooks
) -> None:
    hv.plugin.vms = {"1": ("web-01", vm_meta(PROD))}
    rules_job(lite_app)
    lite_app.discover_endpoint("hv1")
    hv.plugin.down = True
    run = lite_app.run_job("prod")
    # The backup itself works here (the VM is readable), so the run only warns.
    assert run.state == RunState.WARNING, run.error
    assert hv.plugin.backed_up == ["web-01"]
    assert (
        "WARNING discovery of endpoint hv1 failed (cannot reach hv1.example: connection "
        "refused); selecting from the catalog as last discovered"
    ) in log_of(lite_app, run.id)
    assert lite_app.endpoint("hv1").last_discovery_error == (
        "cannot reach hv1.example: connection refused"
    )


def test_explicit_asset_rules_warn_when_their_vm_is_gone(lite_app: Appliance, hv: HvHooks) -> None:
    hv.plugin.vms = {"1": ("web-01", vm_meta(PROD)), "2": ("app", vm_meta("/x"))}
    lite_app.create_job(
        "pick",
        "scripthv",
        "pool",
        endpoint="hv1",
        selection={"include": ["asset=app", "asset=old-vm"]},
    )
    run = lite_app.run_job("pick")
    assert run.state == RunState.WARNING
    assert hv.plugin.backed_up == ["app"]
    log = log_of(lite_app, run.id)
    assert "INFO app: selected by rule asset=app" in log
    assert "WARNING rule asset=old-vm matched no present asset (deleted, renamed or gone?)" in log


def test_one_failed_asset_fails_the_run_but_the_others_are_kept(
    lite_app: Appliance, hv: HvHooks
) -> None:
    hv.plugin.vms = {"1": ("web-01", vm_meta(PROD)), "2": ("web-02", vm_meta(PROD))}
    hv.plugin.fail_backup_of = "web-01"
    rules_job(lite_app)
    run = lite_app.run_job("prod")
    assert run.state == RunState.FAILED
    assert "web-01: web-01: snapshot failed" in (run.error or "")
    assert [rp.asset.name for rp in lite_app.recovery_points(job="prod")] == ["web-02"]


def test_rules_are_stored_canonically_and_bad_ones_store_nothing(
    lite_app: Appliance, hv: HvHooks
) -> None:
    lite_app.create_job(
        "j", "scripthv", "pool", endpoint="hv1", selection={"include": ["Folder=/a/b/"]}
    )
    with lite_app.catalog.session() as s:
        stored = s.scalar(select(Job.selection).where(Job.name == "j"))
    assert stored == {"include": ["folder=/a/b"], "exclude": [], "discover": True}
    with pytest.raises(ValueError, match="invalid selection rule 'colour=red'"):
        lite_app.create_job(
            "bad", "scripthv", "pool", endpoint="hv1", selection={"include": ["colour=red"]}
        )
    with pytest.raises(ValueError, match="as asset=NAME rules"):
        lite_app.create_job(
            "mixed",
            "scripthv",
            "pool",
            endpoint="hv1",
            selection={"include": ["name=a"], "assets": ["b"]},
        )
    assert [j.name for j in lite_app.jobs()] == ["j"]


def test_set_rules_and_preview(lite_app: Appliance, hv: HvHooks) -> None:
    hv.plugin.vms = {
        "1": ("web-01", vm_meta(PROD)),
        "2": ("web-02", vm_meta(PROD, "suspended")),
        "3": ("mail", vm_meta("/DC0/vm/office", tags=["gold"])),
    }
    lite_app.create_job("j", "scripthv", "pool", endpoint="hv1")
    assert lite_app.job_rules("j") is None
    with pytest.raises(ValueError, match="has no selection rules"):
        lite_app.preview_selection("j")
    rules = lite_app.set_job_rules("j", [f"folder={PROD}", "tag=gold"], ["power_state=suspended"])
    assert rules is not None and [str(r) for r in rules.include] == [f"folder={PROD}", "tag=gold"]
    # The preview reads the catalog; it rediscovers only when asked.
    assert lite_app.preview_selection("j").decisions == []
    preview = lite_app.preview_selection("j", discover=True)
    assert [(r["name"], r["selected"], r["reason"]) for r in preview.as_records()] == [
        ("mail", True, "rule tag=gold"),
        ("web-01", True, f"rule folder={PROD}"),
        ("web-02", False, "excluded by power_state=suspended"),
    ]
    with pytest.raises(ValueError, match="invalid selection rule"):
        lite_app.set_job_rules("j", ["bogus"], [])
    assert lite_app.job_rules("j") == rules
    assert lite_app.set_job_rules("j", [], []) is None
    with lite_app.catalog.session() as s:
        assert s.scalar(select(Job.selection).where(Job.name == "j")) == {}
        assert s.scalar(select(Asset.present).where(Asset.name == "mail")) is True


def test_a_job_without_endpoint_selects_among_its_own_assets(
    tmp_path: Path, lite_app: Appliance
) -> None:
    """The files plugin protects the appliance itself: rules apply to what it offers."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("alpha")
    host = socket.gethostname()
    lite_app.create_job(
        "host",
        "files",
        "pool",
        options={"paths": [str(src)]},
        selection={"include": ["all"], "exclude": ["name=no-such-host"]},
    )
    run = lite_app.run_job("host")
    assert run.state == RunState.SUCCEEDED, run.error
    assert f"INFO {host}: selected by rule all" in log_of(lite_app, run.id)
    lite_app.set_job_rules("host", [], [f"name={host}"])
    skipped = lite_app.run_job("host")
    assert skipped.state == RunState.WARNING
    assert f"INFO {host}: excluded by rule name={host} (matched all)" in log_of(
        lite_app, skipped.id
    )


def test_corrupt_stored_rules_fail_the_run_with_the_reason(
    lite_app: Appliance, hv: HvHooks
) -> None:
    hv.plugin.vms = {"1": ("web-01", vm_meta(PROD))}
    rules_job(lite_app)
    with lite_app.catalog.session() as s:
        s.execute(
            update(Job).where(Job.name == "prod").values(selection={"include": ["colour=red"]})
        )
    run = lite_app.run_job("prod")
    assert run.state == RunState.FAILED
    assert "invalid selection rule 'colour=red'" in (run.error or "")
    assert hv.plugin.backed_up == []
