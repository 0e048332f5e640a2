"""Schedules in the appliance's time zone: the setting, following it, DST and missed runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from tapir.appliance.catalog.models import Run, RunState, Schedule
from tapir.appliance.engine import runs
from tapir.appliance.engine.service import Appliance, local_timezone

BERLIN = ZoneInfo("Europe/Berlin")


def _schedule(app: Appliance, job: str) -> Schedule:
    with app.catalog.session() as s:
        return s.scalars(
            select(Schedule).join(Schedule.job).where(Schedule.job.has(name=job))
        ).one()


def _set_next(app: Appliance, job: str, at: datetime) -> None:
    with app.catalog.session() as s:
        sched = s.scalars(select(Schedule).where(Schedule.job.has(name=job))).one()
        sched.next_run_at = at


def _walk(app: Appliance, start: datetime, hours: int, step: timedelta) -> list[datetime]:
    """Tick a controllable clock from ``start``; every queued run is ended at once, so a
    second firing could not hide behind the one-queued-run rule. Returns the fire times."""
    fired: list[datetime] = []
    now = start
    while now < start + timedelta(hours=hours):
        now += step
        for run_id in app.tick_scheduler(now):
            with app.catalog.session() as s:
                fired.append(datetime.fromisoformat(s.get(Run, run_id).params["due_at"]))
            runs.request_cancel(app.catalog, run_id)
    return fired


def test_the_time_zone_defaults_to_the_hosts_and_refuses_unknown_zones(app: Appliance) -> None:
    assert app.timezone() == local_timezone()
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        app.set_timezone("Mars/Olympus")
    assert app.timezone() == local_timezone()  # nothing changed
    assert app.set_timezone("Europe/Berlin") == 0
    assert app.timezone() == "Europe/Berlin"
    assert app.audit_events(1)[0].action == "settings.timezone"


def test_schedules_without_a_zone_follow_the_appliance(app: Appliance, source: Path) -> None:
    app.set_timezone("Europe/Berlin")
    opts = {"paths": [str(source)]}
    app.create_job("follows", "files", "default", options=opts, schedule="0 2 * * *")
    app.create_job(
        "tokyo", "files", "default", options=opts, schedule="0 2 * * *", timezone="Asia/Tokyo"
    )
    follows = _schedule(app, "follows")
    assert (follows.timezone, follows.zone_from_appliance) == ("Europe/Berlin", True)
    assert follows.next_run_at.astimezone(BERLIN).hour == 2

    assert app.set_timezone("America/New_York") == 1
    follows, tokyo = _schedule(app, "follows"), _schedule(app, "tokyo")
    assert follows.timezone == "America/New_York"
    assert follows.next_run_at.astimezone(ZoneInfo("America/New_York")).hour == 2
    # A job given its own zone keeps it.
    assert (tokyo.timezone, tokyo.zone_from_appliance) == ("Asia/Tokyo", False)
    assert tokyo.next_run_at.astimezone(ZoneInfo("Asia/Tokyo")).hour == 2


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        # Spring forward in Berlin: 02:30 does not exist on 2026-03-29; it fires at the jump.
        (datetime(2026, 3, 27, 22, tzinfo=UTC), ["03-28 02:30 CET", "03-29 03:00 CEST"]),
        # Fall back: 02:30 happens twice on 2026-10-25; it fires once, the first time.
        (datetime(2026, 10, 23, 22, tzinfo=UTC), ["10-24 02:30 CEST", "10-25 02:30 CEST"]),
    ],
)
def test_dst_in_the_appliance_zone(
    lite: Appliance, source: Path, start: datetime, expected: list[str]
) -> None:
    lite.set_timezone("Europe/Berlin")
    lite.create_job(
        "nightly", "files", "default", options={"paths": [str(source)]}, schedule="30 2 * * *"
    )
    _set_next(lite, "nightly", None)  # evaluated afresh from the test's clock
    lite.tick_scheduler(start)
    fired = _walk(lite, start, 48, timedelta(minutes=5))
    assert [t.astimezone(BERLIN).strftime("%m-%d %H:%M %Z") for t in fired] == expected


def test_a_scheduler_down_for_days_runs_a_missed_job_once(lite: Appliance, source: Path) -> None:
    lite.set_timezone("Europe/Berlin")
    lite.create_job(
        "hourly", "files", "default", options={"paths": [str(source)]}, schedule="0 * * * *"
    )
    start = datetime(2026, 6, 1, 12, 30, tzinfo=UTC)
    _set_next(lite, "hourly", None)
    lite.tick_scheduler(start)
    # Three days without a tick, then the appliance is back: one run, not 72.
    back = start + timedelta(days=3)
    queued = lite.tick_scheduler(back)
    assert len(queued) == 1
    assert lite.tick_scheduler(back + timedelta(seconds=30)) == []
    with lite.catalog.session() as s:
        assert s.scalar(select(Run).where(Run.state == RunState.QUEUED)).id == queued[0]
    assert _schedule(lite, "hourly").next_run_at == datetime(2026, 6, 4, 13, tzinfo=UTC)
