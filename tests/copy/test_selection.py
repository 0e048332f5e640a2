"""Which points a copy job copies: of given jobs, no older than N days, one per tier
period of each chain, never one it copied before."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import pytest
from copyhelpers import assert_ok, copies
from sqlalchemy import update

from tapir.appliance.catalog.models import RecoveryPoint
from tapir.appliance.engine.copy import CopySelection, plan_copy
from tapir.appliance.engine.service import Appliance


def _backup(app: Appliance, job: str, folder: Path, when: datetime | None = None) -> str:
    """One small backup of ``job``; ``when`` back-dates its catalog row."""
    (folder / "f.bin").write_bytes(random.randbytes(4096))
    assert_ok(app.run_job(job))
    rp = app.recovery_points(job=job)[0]
    if when is not None:
        with app.catalog.session() as s:
            s.execute(
                update(RecoveryPoint).where(RecoveryPoint.id == rp.id).values(created_at=when)
            )
    return rp.id


@pytest.fixture
def two_jobs(app: Appliance, tmp_path: Path) -> dict[str, list[str]]:
    """Jobs 'a' (points on Jan 5, Jan 20, Feb 3 of last year, and now) and 'b' (now)."""
    year = datetime.now(UTC).year - 1
    out: dict[str, list[str]] = {"a": [], "b": []}
    for name in out:
        (tmp_path / name).mkdir()
        app.create_job(name, "files", "default", options={"paths": [str(tmp_path / name)]})
    for when in (
        datetime(year, 1, 5, 12, tzinfo=UTC),
        datetime(year, 1, 20, 12, tzinfo=UTC),
        datetime(year, 2, 3, 12, tzinfo=UTC),
        None,
    ):
        out["a"].append(_backup(app, "a", tmp_path / "a", when))
    out["b"].append(_backup(app, "b", tmp_path / "b"))
    return out


def _copied(app: Appliance, job: str) -> list[str]:
    return [rp.meta["copied_from"] for rp in copies(app, job)]


def test_every_point_is_copied_once(app: Appliance, two_jobs: dict[str, list[str]]) -> None:
    app.create_copy_job("all", "default", "offsite")
    assert_ok(app.run_job("all"))
    assert sorted(_copied(app, "all")) == sorted(two_jobs["a"] + two_jobs["b"])
    assert_ok(app.run_job("all"))
    assert len(copies(app, "all")) == 5
    # Two source jobs of one asset (the host) are two chains on the target.
    levels = {rp.meta["copied_from"]: rp.level for rp in copies(app, "all")}
    assert levels[two_jobs["b"][0]] == "full"
    assert levels[two_jobs["a"][0]] == "full"
    assert [levels[i] for i in two_jobs["a"][1:]] == ["incremental"] * 3


def test_selection_by_job(app: Appliance, two_jobs: dict[str, list[str]]) -> None:
    app.create_copy_job("only-b", "default", "offsite", jobs=["b"])
    assert_ok(app.run_job("only-b"))
    assert _copied(app, "only-b") == two_jobs["b"]


def test_selection_by_age(app: Appliance, two_jobs: dict[str, list[str]]) -> None:
    app.create_copy_job("recent", "default", "offsite", jobs=["a"], max_age_days=30)
    assert_ok(app.run_job("recent"))
    assert _copied(app, "recent") == [two_jobs["a"][3]]


def test_selection_by_tier(app: Appliance, two_jobs: dict[str, list[str]], tmp_path: Path) -> None:
    app.create_copy_job("monthly", "default", "offsite", jobs=["a"], tier="monthly")
    assert_ok(app.run_job("monthly"))
    a = two_jobs["a"]
    # The first point of each month: Jan 5 (not Jan 20), Feb 3, this month's.
    assert _copied(app, "monthly") == [a[0], a[2], a[3]]
    # A new backup in a month already copied is not copied again.
    _backup(app, "a", tmp_path / "a")
    run = app.run_job("monthly")
    assert_ok(run)
    assert len(copies(app, "monthly")) == 3

    app.create_copy_job("yearly", "default", "offsite", tier="yearly")
    assert_ok(app.run_job("yearly"))
    # The target already holds a copy of 'a' for each year (made by 'monthly'): only the
    # chain of 'b' lacks one. What the target pool holds counts, whichever job copied it.
    assert _copied(app, "yearly") == two_jobs["b"]

    app.create_pool("archive", "disk", path=tmp_path / "archive")
    app.create_copy_job("yearly2", "default", "archive", tier="yearly")
    assert_ok(app.run_job("yearly2"))
    # One per year and chain: last year's first of 'a', this year's first of 'a' and of 'b'.
    assert sorted(_copied(app, "yearly2")) == sorted([a[0], a[3], two_jobs["b"][0]])


def test_plan_copy_matches_what_a_run_copies(
    app: Appliance, two_jobs: dict[str, list[str]]
) -> None:
    job = app.create_copy_job("weekly", "default", "offsite", tier="weekly", max_age_days=400)
    planned = plan_copy(app.env, job)
    assert_ok(app.run_job("weekly"))
    assert sorted(_copied(app, "weekly")) == sorted(planned)
    assert plan_copy(app.env, job) == []


def test_bad_copy_jobs_are_refused_and_leave_nothing(app: Appliance) -> None:
    cases = [
        (("c", "nowhere", "offsite"), {}, KeyError),
        (("c", "default", "nowhere"), {}, KeyError),
        (("c", "default", "default"), {}, ValueError),
        (("c", "default", "offsite"), {"jobs": ["no-such-job"]}, KeyError),
        (("c", "default", "offsite"), {"jobs": []}, ValueError),
        (("c", "default", "offsite"), {"max_age_days": 0}, ValueError),
        (("c", "default", "offsite"), {"tier": "hourly"}, ValueError),
        (("c", "default", "offsite"), {"schedule": "not cron"}, ValueError),
        (("bad name", "default", "offsite"), {}, ValueError),
    ]
    for args, kwargs, error in cases:
        with pytest.raises(error):
            app.create_copy_job(*args, **kwargs)
    assert app.jobs() == []
    app.create_copy_job("c", "default", "offsite")
    with pytest.raises(ValueError, match="no backup level"):
        app.run_job("c", level="full")
    assert app.runs() == []
    with pytest.raises(ValueError):
        CopySelection.from_dict({"source_pool": "default", "surprise": 1})


def test_a_copy_job_whose_source_pool_is_gone_fails_clearly(
    app: Appliance, two_jobs: dict[str, list[str]]
) -> None:
    app.create_copy_job("c", "default", "offsite")
    from tapir.appliance.catalog.models import Job

    with app.catalog.session() as s:
        s.execute(update(Job).where(Job.name == "c").values(selection={"source_pool": "vanished"}))
    run = app.run_job("c")
    assert run.state == "failed"
    assert "vanished" in (run.error or "")
    assert copies(app, "c") == []


def test_retention_of_the_target_applies_to_copies(
    app: Appliance, two_jobs: dict[str, list[str]]
) -> None:
    app.create_retention_policy("two", keep_last=2)
    app.create_copy_job("kept", "default", "offsite", retention="two")
    assert_ok(app.run_job("kept"))
    assert len(copies(app, "kept")) == 5
    plan = app.prune(dry_run=False, job="kept")
    # Chains are per source job: 'a' keeps its 2 newest copies, 'b' its only one.
    assert plan.deleted == 2
    left = set(_copied(app, "kept"))
    assert left == {two_jobs["a"][2], two_jobs["a"][3], two_jobs["b"][0]}
    # The source is untouched.
    assert len(app.recovery_points(job="a")) == 4
