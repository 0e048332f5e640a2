"""Backup runs through the facade, with the real data path and small test plugins."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from tapir.appliance.catalog.models import AuditEvent, RecoveryPoint, Run, RunState
from tapir.appliance.engine.backup import choose_level
from tapir.appliance.engine.service import Appliance
from tapir.appliance.engine.worker import WorkerPool
from tapir.appliance.plugin_api import TapirError

from .fakes import FakePlugins, MemStore


def _store(app: Appliance, fake: FakePlugins, pool: str = "mem") -> MemStore:
    return fake.media.stores[str(app.settings.pools_dir / pool)]


def test_full_then_incremental_then_restore(
    app: Appliance, fake_plugins: FakePlugins, tmp_path: Path
) -> None:
    files = fake_plugins.files
    snapshots: list = []
    first = app.run_job("job1", progress=snapshots.append)
    assert (first.state, first.error) == ("succeeded", None)
    assert first.bytes_done == sum(len(d) for d in files.files.values())
    assert first.items_done == 2 and first.bytes_written > 0 and first.finished_at
    assert snapshots and snapshots[-1].bytes_done == first.bytes_done
    files.files[b"new.txt"] = b"fresh data"
    second = app.run_job("job1")
    assert second.state == "succeeded"
    assert files.levels == ["full", "incremental"]
    assert ("INFO", "fake backup of 3 files") in [(lv, m) for _, lv, m in app.run_log(second.id)]
    # An application's own backup runs without freeze/thaw (those serve snapshots of others).
    assert files.calls == ["backup"] * 2
    names = [e for e, _ in fake_plugins.events]
    assert names == ["run_started", "before_snapshot", "after_snapshot", "run_finished"] * 2
    finished = fake_plugins.events[-1][1]
    assert finished["state"] == "succeeded" and len(finished["recovery_points"]) == 1

    points = app.recovery_points(job="job1")
    assert [p.level for p in points] == ["incremental", "full"]
    inc, full = points
    assert inc.parent_id == full.id and inc.run_id == second.id
    assert inc.items == 3 and inc.asset.name == "testhost" and inc.pool.name == "mem"
    assert set(_store(app, fake_plugins).manifests()) == {inc.id, full.id}
    assert app.recovery_point("job1:latest").id == inc.id
    assert app.recovery_point(full.id[:8]).id == full.id
    with pytest.raises(KeyError, match="6 characters"):
        app.recovery_point(full.id[:3])
    with pytest.raises(KeyError):
        app.recovery_point("nojob:latest")

    assert sorted(i.path for i in app.list_items(inc.id)) == [b"a.txt", b"new.txt"]
    assert sorted(i.path for i in app.list_items(inc.id, recursive=True)) == [
        b"a.txt",
        b"b/c.bin",
        b"new.txt",
    ]
    assert [i.path for i in app.list_items(inc.id, b"b")] == [b"b/c.bin"]
    found = [(rp.id, item.path) for rp, item in app.find("*.bin")]
    assert found == [(inc.id, b"b/c.bin"), (full.id, b"b/c.bin")]

    # The incremental is a synthetic full: restoring it alone gives every file.
    target = tmp_path / "restored"
    result = app.restore(inc.id, target=target)
    assert result.items_restored == 3
    for path, data in files.files.items():
        assert (target / path.decode()).read_bytes() == data
    partial = app.restore(full.id, [b"b"], target=tmp_path / "partial")
    assert partial.items_restored == 1
    assert (tmp_path / "partial/b/c.bin").read_bytes() == files.files[b"b/c.bin"]
    restore_run = app.runs(limit=1)[0]
    assert (restore_run.kind, restore_run.state) == ("restore", "succeeded")
    with pytest.raises(ValueError, match="target"):
        app.restore(inc.id)
    with pytest.raises(ValueError, match="overwrite"):
        app.restore(inc.id, target=target, overwrite="sometimes")


def test_a_failing_plugin_leaves_no_recovery_point(
    app: Appliance, fake_plugins: FakePlugins
) -> None:
    fake_plugins.files.fail_at = b"b/c.bin"
    run = app.run_job("job1")
    assert run.state == "failed"
    assert "cannot read b/c.bin" in run.error
    assert app.recovery_points() == []
    store = _store(app, fake_plugins)
    assert store.manifests() == []
    assert fake_plugins.files.calls == ["backup"]
    assert ("after_snapshot", {"asset": "testhost", "ok": False}) in fake_plugins.events
    assert fake_plugins.events[-1][1]["state"] == "failed"
    log = [m for _, level, m in app.run_log(run.id) if level == "ERROR"]
    assert any("cannot read b/c.bin" in m for m in log)
    # The next backup is a full again: there is no parent.
    fake_plugins.files.fail_at = None
    assert app.run_job("job1").state == "succeeded"
    assert fake_plugins.files.levels[-1] == "full"


@pytest.mark.parametrize("how", ["this process", "another process"])
def test_cancel_stops_a_running_backup(app: Appliance, fake_plugins: FakePlugins, how: str) -> None:
    from tapir.appliance.engine import runs

    gate = threading.Event()
    fake_plugins.files.gate = gate
    result: list[Run] = []
    thread = threading.Thread(target=lambda: result.append(app.run_job("job1")))
    thread.start()
    assert fake_plugins.files.reached_gate.wait(30)
    run_id = app.runs(limit=1)[0].id
    if how == "this process":
        app.cancel_run(run_id)
    else:
        runs.request_cancel(app.catalog, run_id)  # only the flag in the catalog
        time.sleep(2.5)  # the run's monitor polls the flag every second
    gate.set()
    thread.join(30)
    run = result[0]
    assert run.state == "canceled" and "canceled" in run.error
    assert app.recovery_points() == []
    assert _store(app, fake_plugins).manifests() == []


def test_cancel_of_queued_and_finished_runs(app: Appliance) -> None:
    run_id = app.queue_run("job1")
    app.cancel_run(run_id)
    assert app.run(run_id).state == "canceled"
    assert app.claim_next_run("w") is None
    with pytest.raises(ValueError, match="already finished"):
        app.cancel_run(run_id)


def test_levels_full_every_and_capabilities(app: Appliance, fake_plugins: FakePlugins) -> None:
    app.create_job("every2", "fakefiles", "mem", full_every=2)
    for _ in range(4):
        assert app.run_job("every2").state == "succeeded"
    assert fake_plugins.files.levels == ["full", "incremental", "incremental", "full"]
    assert app.run_job("every2", level="full").state == "succeeded"
    fake_plugins.files.incremental = False
    assert app.run_job("every2", level="incremental").state == "succeeded"
    assert fake_plugins.files.levels[-2:] == ["full", "full"]
    with pytest.raises(ValueError, match="unknown backup level"):
        app.run_job("every2", level="differential")
    with pytest.raises(KeyError):
        app.run_job("nosuchjob")


def test_choose_level() -> None:
    caps = {"incremental"}
    assert (
        choose_level(
            "auto", has_parent=False, incrementals_since_full=0, full_every=None, capabilities=caps
        )[0]
        == "full"
    )
    assert (
        choose_level(
            "auto", has_parent=True, incrementals_since_full=5, full_every=None, capabilities=caps
        )[0]
        == "incremental"
    )
    assert (
        choose_level(
            "auto", has_parent=True, incrementals_since_full=3, full_every=3, capabilities=caps
        )[0]
        == "full"
    )
    # An explicit incremental is honoured even past full_every.
    assert (
        choose_level(
            "incremental",
            has_parent=True,
            incrementals_since_full=3,
            full_every=3,
            capabilities=caps,
        )[0]
        == "incremental"
    )
    with pytest.raises(TapirError, match="log"):
        choose_level(
            "log", has_parent=True, incrementals_since_full=0, full_every=None, capabilities=caps
        )


def test_failed_runs_are_retried_later(app: Appliance, fake_plugins: FakePlugins) -> None:
    app.create_job("retry", "fakefiles", "mem", max_retries=1)
    fake_plugins.files.fail_at = b"a.txt"
    first = app.run_job("retry")
    assert first.state == "failed"
    retry = app.runs(limit=1, job="retry")[0]
    assert (retry.state, retry.trigger, retry.attempt) == ("queued", "retry", 2)
    assert retry.not_before > first.finished_at
    assert app.claim_next_run("w") is None  # not before its back-off


def test_worker_pool_executes_queued_runs(app: Appliance, fake_plugins: FakePlugins) -> None:
    app.create_job("job2", "fakefiles", "mem")
    ids = [app.queue_run("job1"), app.queue_run("job2"), app.queue_run("job1")]
    pool = WorkerPool(app, 2, scheduler=False, poll_interval=0.1)
    pool.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if all(app.run(i).state in RunState.FINISHED for i in ids):
                break
            time.sleep(0.1)
    finally:
        pool.stop(30)
    assert [app.run(i).state for i in ids] == ["succeeded"] * 3
    assert all(not t.is_alive() for t in pool.threads)
    assert sorted(r for w in pool.workers for r in w.executed) == sorted(ids)
    assert len(app.recovery_points()) == 3


def test_prune_dry_run_then_real_then_gc(app: Appliance, fake_plugins: FakePlugins) -> None:
    app.create_retention_policy("two", keep_last=2)
    app.create_job("pruned", "fakefiles", "mem", retention="two")
    for n in range(4):
        fake_plugins.files.files[b"a.txt"] = b"version %d " % n * 2000
        fake_plugins.files.mtimes[b"a.txt"] = 100 + n
        assert app.run_job("pruned").state == "succeeded"
    oldest_first = list(reversed(app.recovery_points(job="pruned")))
    app.set_legal_hold(oldest_first[0].id[:10], True)

    plan = app.prune(dry_run=True, job="pruned")
    assert plan.dry_run and plan.deleted == 0
    decisions = {d.recovery_point_id: d for d in plan.decisions}
    assert [decisions[p.id].keep for p in oldest_first] == [True, False, True, True]
    assert decisions[oldest_first[0].id].reasons == ["legal hold"]
    assert decisions[oldest_first[1].id].reasons == ["policy two: no rule keeps it"]
    assert len(app.recovery_points(job="pruned")) == 4  # a dry run changes nothing

    plan = app.prune(dry_run=False, job="pruned")
    assert plan.deleted == 1
    left = {p.id for p in app.recovery_points(job="pruned")}
    assert left == {oldest_first[0].id, oldest_first[2].id, oldest_first[3].id}
    store = _store(app, fake_plugins)
    assert oldest_first[1].id not in store.manifests()
    # The newest point, an incremental whose chain lost a member, still restores whole.
    assert app.verify(oldest_first[3].id).ok
    report = app.gc("mem")
    assert report.chunks_unreferenced > 0 and report.bytes_reclaimed > 0
    assert app.verify("mem").ok
    with app.catalog.session() as s:
        actions = [e.action for e in s.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    assert {"pool.create", "job.create", "retention.create", "hold", "prune", "gc"} <= set(actions)


def test_gc_is_refused_while_a_backup_writes_to_the_pool(app: Appliance) -> None:
    run_id = app.queue_run("job1")
    assert app.claim_next_run("w") == run_id
    with pytest.raises(TapirError, match="running"):
        app.gc("mem")
    assert app.gc("mem", dry_run=True).dry_run


def test_audit_actor_and_operator_errors(app: Appliance) -> None:
    with app.acting_as("alice", "127.0.0.1"):
        app.create_retention_policy("weekly", keep_weekly=4)
    with app.catalog.session() as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "retention.create")).one()
        assert (event.actor, event.remote_addr, event.details) == (
            "alice",
            "127.0.0.1",
            {"keep_weekly": 4},
        )
    with pytest.raises(ValueError, match="already exists"):
        app.create_retention_policy("weekly", keep_weekly=1)
    with pytest.raises(ValueError, match="unknown retention rules"):
        app.create_retention_policy("x", keep_forever=1)
    with pytest.raises(ValueError, match="at least one rule"):
        app.create_retention_policy("x")
    with pytest.raises(ValueError, match="already exists"):
        app.create_pool("mem", "memdisk")
    with pytest.raises(ValueError, match="invalid pool name"):
        app.create_pool("../evil", "memdisk")
    with pytest.raises(KeyError, match="no media plugin"):
        app.create_pool("tape1", "tape")
    with pytest.raises(ValueError, match="compression"):
        app.create_pool("p2", "memdisk", compression="gzip")
    with pytest.raises(KeyError, match="no pool"):
        app.create_job("j", "fakefiles", "nopool")
    with pytest.raises(ValueError, match="no job option"):
        app.create_job("j", "fakefiles", "mem", options={"pathz": ["/"]})
    with pytest.raises(KeyError, match="no source plugin"):
        app.create_job("j", "nosuch", "mem")
    assert [p.name for p in app.pools()] == ["mem"]
    assert [j.name for j in app.jobs()] == ["job1"]


def test_users_and_secrets(app: Appliance) -> None:
    app.create_user("bob", "pa55word!", "operator")
    assert app.authenticate("bob", "pa55word!").role == "operator"
    assert app.authenticate("bob", "wrong") is None
    assert app.authenticate("nobody", "pa55word!") is None
    with pytest.raises(ValueError, match="role"):
        app.create_user("eve", "x", "root")
    app.set_password("bob", "n3w")
    assert app.authenticate("bob", "n3w") is not None
    app.set_secret("vcenter", "s3cret")
    assert app.read_secret("vcenter") == "s3cret"
    with pytest.raises(KeyError):
        app.read_secret("missing")


def test_pool_usage(app: Appliance) -> None:
    assert app.run_job("job1").state == "succeeded"
    usage = app.pool_usage("mem")
    assert usage["recovery_points"] == 1 and usage["used"] > 0
    assert usage["logical"] == app.recovery_points()[0].bytes_logical
    assert usage["dedup_ratio"] > 1  # the test data compresses well
    with app.catalog.session() as s:
        assert s.scalar(select(RecoveryPoint.pool_id)) is not None
