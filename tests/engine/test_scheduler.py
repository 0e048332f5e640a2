"""Cron schedules: DST rule, missed runs, one queued run per job, invalid input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from tapir.appliance.catalog.models import Run, RunState, Schedule
from tapir.appliance.engine import scheduler
from tapir.appliance.engine.service import Appliance

BERLIN = ZoneInfo("Europe/Berlin")


def _local(ts: datetime) -> str:
    return ts.astimezone(BERLIN).strftime("%Y-%m-%d %H:%M %Z")


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        # Spring forward (2026-03-29): 02:30 does not exist; it fires once, at 03:00 CEST.
        (
            datetime(2026, 3, 27, 12, tzinfo=UTC),
            [
                "2026-03-28 02:30 CET",
                "2026-03-29 03:00 CEST",
                "2026-03-30 02:30 CEST",
            ],
        ),
        # Fall back (2026-10-25): 02:30 happens twice; it fires once, the first time (CEST).
        (
            datetime(2026, 10, 23, 12, tzinfo=UTC),
            [
                "2026-10-24 02:30 CEST",
                "2026-10-25 02:30 CEST",
                "2026-10-26 02:30 CET",
            ],
        ),
    ],
)
def test_daily_0230_in_berlin_across_dst(start: datetime, expected: list[str]) -> None:
    times = scheduler.fire_times("30 2 * * *", "Europe/Berlin", start, 3)
    assert [_local(t) for t in times] == expected
    assert all(t.tzinfo is not None for t in times)


def test_a_clock_stepping_through_each_dst_day_fires_exactly_once_per_day() -> None:
    # Walk a clock minute by minute over both transition days, as a scheduler does.
    for day in (datetime(2026, 3, 28, 22, tzinfo=UTC), datetime(2026, 10, 24, 21, tzinfo=UTC)):
        fired = []
        now = day
        next_at = scheduler.next_fire("30 2 * * *", "Europe/Berlin", now)
        while now < day + timedelta(hours=26):
            now += timedelta(minutes=1)
            if next_at <= now:
                fired.append(next_at)
                next_at = scheduler.next_fire("30 2 * * *", "Europe/Berlin", now)
        assert len(fired) == 1, [_local(f) for f in fired]


def test_second_occurrence_of_a_repeated_hour_does_not_fire_again() -> None:
    # At 02:10 CET (the second 02:10) the 02:30 of that day already fired in CEST.
    after = datetime(2026, 10, 25, 1, 10, tzinfo=UTC)
    assert _local(after) == "2026-10-25 02:10 CET"
    assert (
        _local(scheduler.next_fire("30 2 * * *", "Europe/Berlin", after)) == "2026-10-26 02:30 CET"
    )


def test_frequent_schedules_never_fire_twice_at_one_instant() -> None:
    start = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
    times = scheduler.fire_times("*/20 * * * *", "Europe/Berlin", start, 6)
    assert len(set(times)) == 6 and times == sorted(times)
    assert [_local(t)[11:16] for t in times] == [
        "01:40",
        "03:00",
        "03:20",
        "03:40",
        "04:00",
        "04:20",
    ]


def test_invalid_cron_and_zone_are_refused() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="invalid cron"):
        scheduler.fire_times("61 * * * *", "UTC", now, 1)
    with pytest.raises(ValueError, match="invalid cron"):
        scheduler.fire_times("* * *", "UTC", now, 1)
    with pytest.raises(ValueError, match="unknown time zone"):
        scheduler.fire_times("0 1 * * *", "Mars/Olympus", now, 1)
    with pytest.raises(ValueError, match="aware"):
        scheduler.fire_times("0 1 * * *", "UTC", datetime(2026, 1, 1), 1)


def _queued(app: Appliance) -> list[Run]:
    with app.catalog.session() as s:
        return list(s.scalars(select(Run).where(Run.state == RunState.QUEUED)))


def test_missed_fire_times_queue_one_run_and_never_a_second(app: Appliance) -> None:
    t0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    app.create_job("nightly", "fakefiles", "mem", schedule="0 3 * * *", timezone="Europe/Berlin")
    with app.catalog.session() as s:
        sched = s.scalar(select(Schedule))
        sched.next_run_at = scheduler.next_fire(sched.cron, sched.timezone, t0)
    assert app.tick_scheduler(t0) == []
    # Down for three days: three fire times passed, one run is queued.
    later = t0 + timedelta(days=3, hours=1)
    queued = app.tick_scheduler(later)
    assert len(queued) == 1
    assert app.tick_scheduler(later + timedelta(seconds=5)) == []
    with app.catalog.session() as s:
        sched = s.scalar(select(Schedule))
        assert sched.next_run_at > later and sched.last_fired_at == later
        assert _local(sched.next_run_at) == "2026-06-05 03:00 CEST"
    # The next fire time passes while the first run still waits: no second run.
    assert app.tick_scheduler(later + timedelta(days=1)) == []
    assert [r.id for r in _queued(app)] == queued
    run = app.run(queued[0])
    assert run.trigger == "schedule" and run.job.name == "nightly"
    # Once the waiting run is gone, the schedule queues again.
    app.cancel_run(queued[0])
    assert len(app.tick_scheduler(later + timedelta(days=2))) == 1


def test_disabled_schedules_and_unset_next_time(app: Appliance) -> None:
    t0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    app.create_job("hourly", "fakefiles", "mem", schedule="0 * * * *", timezone="UTC")
    with app.catalog.session() as s:
        sched = s.scalar(select(Schedule))
        sched.next_run_at = None
    # A schedule never evaluated only learns its next time: nothing runs for the past.
    assert app.tick_scheduler(t0) == []
    with app.catalog.session() as s:
        sched = s.scalar(select(Schedule))
        assert sched.next_run_at == datetime(2026, 6, 1, 13, 0, tzinfo=UTC)
        sched.enabled = False
    assert app.tick_scheduler(t0 + timedelta(hours=5)) == []
    assert app.next_runs("hourly", 2) == []


def test_create_job_rejects_a_bad_schedule(app: Appliance) -> None:
    with pytest.raises(ValueError, match="invalid cron"):
        app.create_job("bad", "fakefiles", "mem", schedule="every night")
    with pytest.raises(ValueError, match="time zone"):
        app.create_job("bad", "fakefiles", "mem", schedule="0 1 * * *", timezone="Nowhere/X")
    assert [j.name for j in app.jobs()] == ["job1"]
