"""A job on several schedules, each at its own level (a database's log every few minutes
beside its weekly full), through the real command line."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from tapir.appliance.cli.main import build_cli
from tapir.appliance.config import load_settings
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_manager import load_plugins


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TAPIR_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TAPIR_DATABASE_URL", raising=False)
    return tmp_path / "home"


def tapir(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(build_cli(load_plugins()), list(args))


def test_a_job_runs_on_two_schedules_at_their_own_levels(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    assert tapir("init").exit_code == 0
    made = tapir(
        "job", "create", "db", "--plugin", "files", "--pool", "default",
        "--path", str(src), "--schedule", "0 3 * * 0", "--timezone", "UTC",
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    added = tapir("job", "schedule", "add", "db", "*/5 * * * *", "--level", "log")
    assert added.exit_code == 0, added.output
    listed = json.loads(tapir("job", "schedule", "list", "db", "--json").output)
    assert [(r["cron"], r["level"]) for r in listed] == [
        ("0 3 * * 0", "auto"),
        ("*/5 * * * *", "log"),
    ]
    log_schedule = listed[1]

    # Bad input changes nothing.
    assert tapir("job", "schedule", "add", "db", "*/5 * *", "--level", "log").exit_code == 2
    assert tapir("job", "schedule", "add", "db", "* * * * *", "--level", "hourly").exit_code == 2
    assert tapir("job", "schedule", "add", "nojob", "* * * * *").exit_code != 0
    assert len(json.loads(tapir("job", "schedule", "list", "db", "--json").output)) == 2

    # When the log schedule is due, the scheduler queues a run at level log.
    app = Appliance.open(load_settings(home))
    try:
        (sched,) = [s for s in app.job_schedules("db") if s.id == log_schedule["id"]]
        assert sched.next_run_at is not None
        (run_id,) = app.tick_scheduler(sched.next_run_at + timedelta(seconds=1))
        run = app.run(run_id)
        assert (run.level, run.trigger) == ("log", "schedule")
        assert [e.action for e in app.audit_events() if e.target == "db"].count(
            "job.schedule.add"
        ) == 1
    finally:
        app.close()

    removed = tapir("job", "schedule", "remove", "db", str(log_schedule["id"]))
    assert removed.exit_code == 0, removed.output
    assert [
        r["level"] for r in json.loads(tapir("job", "schedule", "list", "db", "--json").output)
    ] == ["auto"]
    assert tapir("job", "schedule", "remove", "db", "999").exit_code != 0
