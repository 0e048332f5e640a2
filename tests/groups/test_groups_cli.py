"""``tapir group`` end to end with two files jobs (no mark: each point is its backup
after the thaw), and the refusals at group creation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tapir.appliance import security
from tapir.appliance.catalog.database import Catalog
from tapir.appliance.config import Settings
from tapir.appliance.engine.groups import parse_window
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_api import TapirError
from tapir.appliance.plugin_manager import load_plugins
from tapir.plugins.disk import plugin as disk_plugin
from tapir.plugins.files import plugin as files_plugin
from tapir.plugins.vmware import plugin as vmware_plugin

TAPIR = Path(sys.executable).parent / "tapir"
Tapir = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def tapir(tmp_path: Path) -> Tapir:
    env = {**os.environ, "TAPIR_HOME": str(tmp_path / "home")}
    env.pop("TAPIR_DATABASE_URL", None)

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(TAPIR), *args], capture_output=True, text=True, env=env, timeout=120
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"tapir {' '.join(args)}: {proc.returncode}\n{proc.stderr}")
        return proc

    return run


def js(proc: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(proc.stdout)


def test_group_commands_end_to_end(tapir: Tapir, tmp_path: Path) -> None:
    tapir("init")
    tapir("pool", "create", "vault", "--path", str(tmp_path / "pool"))
    for name in ("web", "conf"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "f.txt").write_text(f"{name}\n")
        tapir(
            "job",
            "create",
            name,
            "--plugin",
            "files",
            "--pool",
            "vault",
            "--path",
            str(tmp_path / name),
        )
    tapir("group", "create", "site", "--member", "web", "--member", "conf", "--freeze-window", "5s")
    (listed,) = js(tapir("group", "list", "--json"))
    assert listed["members"] == ["web", "conf"] and listed["freeze_window"] == 5.0

    run = js(tapir("group", "run", "site", "--json"))
    assert run["state"] == "succeeded", run["error"]
    assert run["freeze_seconds"] <= 5
    assert {m["job"] for m in run["members"]} == {"web", "conf"}
    assert all(m["recovery_point"] and m["mark"] == {} for m in run["members"])
    shown = js(tapir("group", "show", "site", "--json"))
    assert [r["id"] for r in shown["runs"]] == [run["id"]]

    target = tmp_path / "restored"
    out = tapir("group", "restore", "site", "--to", str(target)).stdout
    assert f"run {run['id']} restored" in out
    for name in ("web", "conf"):
        restored = target / name / str(tmp_path / name).lstrip("/") / "f.txt"
        assert restored.read_text() == f"{name}\n"

    stray = tapir(
        "group",
        "restore",
        "site",
        "--to",
        str(tmp_path / "x"),
        "--member-option",
        "db:a=1",
        check=False,
    )
    assert stray.returncode != 0 and "'db' is not a member of group site" in stray.stderr
    assert not (tmp_path / "x").exists()
    bad = tapir("group", "create", "solo", "--member", "web", check=False)
    assert bad.returncode != 0 and "at least two member jobs" in bad.stderr
    tapir("group", "delete", "site", "--yes")
    assert js(tapir("group", "list", "--json")) == []
    assert len(js(tapir("backups", "--json"))) == 2  # the members' points stay


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Appliance]:
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    catalog.upgrade()
    settings = Settings(home=tmp_path / "home", database_url=catalog.url)
    security.create_master_key(settings)
    registry = load_plugins(extra=[files_plugin, vmware_plugin, disk_plugin], entry_points=False)
    assert not registry.failures, registry.failures
    appliance = Appliance(settings, catalog, registry)
    appliance.create_pool("p", "disk", path=tmp_path / "pool")
    for name in ("a", "b"):
        appliance.create_job(name, "files", "p", options={"paths": [str(tmp_path)]})
    yield appliance
    appliance.close()


def test_a_hypervisor_member_joins_an_application_but_not_alone(app: Appliance) -> None:
    app.register_endpoint("vc", "vmware", "127.0.0.1:1", options={"user": "u"}, password="x")
    app.create_job("vms", "vmware", "p", endpoint="vc")
    app.create_job("vms2", "vmware", "p", endpoint="vc")
    with pytest.raises(ValueError, match="needs at least one application member"):
        app.create_group("g", ["vms", "vms2"])
    assert app.groups() == []
    app.create_group("g", ["a", "vms"])
    assert [g.name for g in app.groups()] == ["g"]


@pytest.mark.parametrize(
    ("members", "window", "error"),
    [
        (["a"], "10s", "at least two member jobs"),
        (["a", "a"], "10s", "at least two member jobs|more than once"),
        (["a", "nope"], "10s", "no job named 'nope'"),
        (["a", "b"], "0s", "above 0"),
        (["a", "b"], "ten", "not a duration"),
        (["a", "b"], "11m", "at most 600"),
    ],
)
def test_bad_groups_are_refused(
    app: Appliance, members: list[str], window: str, error: str
) -> None:
    with pytest.raises((ValueError, KeyError), match=error):
        app.create_group("g", members, freeze_window=window)
    assert app.groups() == []


def test_windows_parse_and_names_are_unique(app: Appliance) -> None:
    assert parse_window("500ms") == 0.5 and parse_window("1m") == 60.0 and parse_window(3) == 3.0
    app.create_group("g", ["a", "b"], schedule="0 2 * * *")
    with pytest.raises(ValueError, match="exists already"):
        app.create_group("g", ["a", "b"])
    (g,) = app.groups()
    assert g.schedule == "0 2 * * *" and g.next_run_at is not None


def test_a_run_that_overruns_its_window_fails_and_backs_nothing_up(app: Appliance) -> None:
    from tapir.appliance.engine.group_run import run_group

    app.create_group("g", ["a", "b"], freeze_window="2s")
    ticks = iter(range(0, 1000, 3))  # every clock reading 3 s after the previous one
    grun_id = run_group(app.env, "g", app.worker, clock=lambda: float(next(ticks)))
    grun = app.group_run(grun_id)
    assert grun.state == "failed"
    assert grun.error is not None and "the freeze window was overrun" in grun.error
    assert "more than 2 s" in grun.error
    assert app.recovery_points() == []


def test_scheduled_groups_run_when_due(app: Appliance) -> None:
    from datetime import UTC, datetime, timedelta

    app.create_group("g", ["a", "b"], schedule="0 2 * * *", timezone="UTC")
    (g,) = app.groups()
    assert g.next_run_at is not None
    assert app.run_due_groups(g.next_run_at - timedelta(seconds=1)) == []
    (done,) = app.run_due_groups(g.next_run_at + timedelta(seconds=1))
    assert done.state == "succeeded", done.error
    assert done.trigger == "schedule"
    assert len(app.recovery_points()) == 2
    (again,) = app.groups()
    assert again.next_run_at is not None and again.next_run_at > datetime.now(UTC)


def test_the_scheduler_threads_run_a_due_group(app: Appliance) -> None:
    import time
    from datetime import UTC, datetime, timedelta

    from tapir.appliance.catalog.models import ConsistencyGroup
    from tapir.appliance.engine.worker import WorkerPool

    app.create_group("g", ["a", "b"], schedule="0 2 * * *", timezone="UTC")
    with app.catalog.session() as s:
        for row in s.query(ConsistencyGroup):
            row.next_run_at = datetime.now(UTC) - timedelta(seconds=1)
    pool = WorkerPool(app, workers=1, scheduler=True, tick_interval=0.1)
    pool.start()
    try:
        deadline = time.monotonic() + 60
        while not app.group_runs("g") and time.monotonic() < deadline:
            time.sleep(0.1)
        while app.group_runs("g")[0].state == "running" and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        pool.stop(timeout=30)
    (done,) = app.group_runs("g")
    assert (done.state, done.trigger) == ("succeeded", "schedule"), done.error


def test_a_member_job_is_not_deleted_under_its_group(app: Appliance) -> None:
    app.create_group("g", ["a", "b"])
    with pytest.raises(TapirError, match="member of consistency group"):
        app.delete_job("a")
    assert {j.name for j in app.jobs()} >= {"a", "b"}
