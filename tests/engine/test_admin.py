"""Editing and removing pools, retention policies, jobs and users through the facade:
every change audited, every refusal leaves the catalog as it was."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tapir.appliance.catalog.models import Job, RecoveryPoint, RunState
from tapir.appliance.catalog.web_models import ApiToken
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_api.errors import TapirError
from tapir.appliance.web.tokens import create_token

from .fakes import FakePlugins


def actions(app: Appliance) -> list[tuple[str, str]]:
    return [(e.action, e.target) for e in app.audit_events(limit=100)]


def test_a_pool_gets_and_loses_a_retention_policy_and_a_concurrency_limit(
    app: Appliance,
) -> None:
    app.create_retention_policy("week", keep_within_days=7)
    pool = app.update_pool("mem", retention="week", max_concurrent_runs=2)
    assert pool.retention_policy.name == "week" and pool.max_concurrent_runs == 2
    event = app.audit_events(limit=1)[0]
    assert (event.action, event.target) == ("pool.update", "mem")
    assert event.details["retention"] == {"from": None, "to": "week"}
    pool = app.update_pool("mem", retention=None)
    assert pool.retention_policy is None and pool.max_concurrent_runs == 2


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"retention": "nope"}, KeyError),
        ({"max_concurrent_runs": 0}, ValueError),
        ({"max_concurrent_runs": "3"}, ValueError),
    ],
)
def test_a_bad_pool_change_changes_nothing(
    app: Appliance, change: dict[str, object], error: type[Exception]
) -> None:
    before = len(app.audit_events())
    with pytest.raises(error):
        app.update_pool("mem", **change)  # type: ignore[arg-type]
    pool = app.pools()[0]
    assert pool.retention_policy_id is None and pool.max_concurrent_runs is None
    assert len(app.audit_events()) == before


def test_a_pool_is_deleted_only_once_nothing_uses_it(
    app: Appliance, fake_plugins: FakePlugins
) -> None:
    with pytest.raises(TapirError, match="job\\(s\\) job1 write to it"):
        app.delete_pool("mem")
    assert app.run_job("job1").state == RunState.SUCCEEDED
    assert app.delete_job("job1") == 1
    # The job is gone, its point is not: the pool still holds data.
    with pytest.raises(TapirError, match="holds 1 recovery point"):
        app.delete_pool("mem")
    assert [p.name for p in app.pools()] == ["mem"]
    app.create_pool("spare", "memdisk")
    app.delete_pool("spare")
    assert [p.name for p in app.pools()] == ["mem"]
    assert ("pool.delete", "spare") in actions(app)
    with pytest.raises(KeyError, match="no pool named 'spare'"):
        app.delete_pool("spare")


def test_a_copy_job_reading_a_pool_keeps_it(app: Appliance) -> None:
    app.create_pool("offsite", "memdisk")
    app.create_pool("source", "memdisk")
    app.create_copy_job("mirror", "source", "offsite")
    assert app.pool_delete_refusals("source") == ["copy job(s) mirror read from it"]
    with pytest.raises(TapirError, match="copy job"):
        app.delete_pool("source")


def test_a_retention_policy_is_edited_and_deleted_only_when_unused(app: Appliance) -> None:
    app.create_retention_policy("gfs", keep_daily=7, keep_weekly=4)
    policy = app.update_retention_policy("gfs", keep_last=3)
    assert (policy.keep_last, policy.keep_daily, policy.keep_weekly) == (3, None, None)
    with pytest.raises(ValueError, match="at least one rule"):
        app.update_retention_policy("gfs", keep_last=0)
    with pytest.raises(ValueError, match="whole number"):
        app.update_retention_policy("gfs", keep_last=-1)
    assert app.retention_policies()[0].keep_last == 3
    app.update_job("job1", retention="gfs")
    app.update_pool("mem", retention="gfs")
    with pytest.raises(TapirError, match="in use by pool mem, job job1"):
        app.delete_retention_policy("gfs")
    app.update_job("job1", retention=None)
    app.update_pool("mem", retention=None)
    app.delete_retention_policy("gfs")
    assert app.retention_policies() == []
    assert ("retention.delete", "gfs") in actions(app)


def test_a_job_is_edited_field_by_field(app: Appliance) -> None:
    app.create_pool("other", "memdisk")
    job = app.update_job(
        "job1", options={"paths": ["/srv"]}, schedule="30 2 * * 1-5", timezone="Europe/Berlin"
    )
    assert job.options == {"paths": ["/srv"]}
    assert [(s.cron, s.timezone) for s in job.schedules] == [("30 2 * * 1-5", "Europe/Berlin")]
    assert app.next_runs("job1", 1)
    job = app.update_job("job1", pool="other")
    assert job.pool.name == "other" and job.options == {"paths": ["/srv"]}
    job = app.update_job("job1", schedule=None)
    assert job.schedules == [] and app.next_runs("job1") == []
    event = app.audit_events(limit=1)[0]
    assert event.action == "job.update" and event.details["schedule"]["from"] == "30 2 * * 1-5"


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"options": {"nope": 1}}, ValueError, "no job option nope"),
        ({"schedule": "61 * * * *"}, ValueError, "invalid cron expression"),
        ({"schedule": "0 2 * * *", "timezone": "Mars/Olympus"}, ValueError, "unknown time zone"),
        ({"pool": "nope"}, KeyError, "no pool named"),
        ({"retention": "nope"}, KeyError, "no retention policy"),
    ],
)
def test_a_bad_job_change_changes_nothing(
    app: Appliance, change: dict[str, object], error: type[Exception], message: str
) -> None:
    app.update_job("job1", schedule="0 1 * * *", options={"paths": ["/a"]})
    before = app.jobs()[0]
    with pytest.raises(error, match=message):
        app.update_job("job1", **change)  # type: ignore[arg-type]
    after = app.jobs()[0]
    assert after.options == before.options and after.pool_id == before.pool_id
    assert [s.cron for s in after.schedules] == ["0 1 * * *"]


def test_a_disabled_job_cannot_run_until_enabled(app: Appliance) -> None:
    app.set_job_enabled("job1", False)
    with pytest.raises(TapirError, match="disabled"):
        app.queue_run("job1")
    app.set_job_enabled("job1", False)  # no change: not audited twice
    assert actions(app).count(("job.disable", "job1")) == 1
    app.set_job_enabled("job1", True)
    assert app.queue_run("job1") > 0


def test_a_deleted_job_leaves_its_recovery_points_and_runs(app: Appliance) -> None:
    run = app.run_job("job1")
    assert run.state == RunState.SUCCEEDED
    queued = app.queue_run("job1")
    with pytest.raises(TapirError, match="queued or running"):
        app.delete_job("job1")
    app.cancel_run(queued)
    assert app.delete_job("job1") == 1
    assert app.jobs() == []
    with app.catalog.session() as s:
        points = list(s.scalars(select(RecoveryPoint)))
        assert len(points) == 1 and points[0].job_id is None
        assert s.scalar(select(Job.id)) is None
    assert app.run(run.id).job_id is None
    assert app.audit_events(limit=1)[0].details == {"recovery_points_kept": 1}


def test_the_last_admin_stays_admin(app: Appliance) -> None:
    app.create_user("alice", "a long enough password", "admin")
    app.create_user("bob", "a long enough password", "operator")
    alice_id = next(u.id for u in app.users() if u.username == "alice")
    create_token(app, alice_id, "alice", "script")
    with pytest.raises(TapirError, match="last admin"):
        app.set_user_role("alice", "read-only")
    with pytest.raises(TapirError, match="last admin"):
        app.delete_user("alice")
    app.set_user_role("bob", "admin")
    app.set_user_role("alice", "operator")
    with pytest.raises(TapirError, match="last admin"):
        app.delete_user("bob")
    app.delete_user("alice")
    with pytest.raises(ValueError, match="unknown role"):
        app.set_user_role("bob", "root")
    with pytest.raises(KeyError):
        app.delete_user("alice")
    assert [(u.username, u.role) for u in app.users()] == [("bob", "admin")]
    with app.catalog.session() as s:
        assert s.scalar(select(ApiToken.id)) is None  # alice's token went with her
    assert ("user.delete", "alice") in actions(app)
    assert ("user.role", "bob") in actions(app)


def test_an_edited_schedule_keeps_following_the_appliances_zone(app: Appliance) -> None:
    app.create_job("follows", "fakefiles", "mem", schedule="0 1 * * *")
    app.create_job("pinned", "fakefiles", "mem", schedule="0 1 * * *", timezone="Asia/Tokyo")
    app.update_job("follows", schedule="0 2 * * *")
    app.update_job("pinned", schedule="0 2 * * *")
    app.set_timezone("America/New_York")
    zones = {j.name: [(s.cron, s.timezone) for s in j.schedules] for j in app.jobs()}
    assert zones["follows"] == [("0 2 * * *", "America/New_York")]
    assert zones["pinned"] == [("0 2 * * *", "Asia/Tokyo")]
    app.update_job("follows", timezone="Europe/Berlin")  # now it has a zone of its own
    app.set_timezone("UTC")
    job = next(j for j in app.jobs() if j.name == "follows")
    assert [(s.cron, s.timezone) for s in job.schedules] == [("0 2 * * *", "Europe/Berlin")]
