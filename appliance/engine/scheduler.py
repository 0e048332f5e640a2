"""Cron schedules: when a job's runs are due, and queuing them.

Schedules are evaluated on the wall clock of their time zone: the appliance's
(a setting, the host's zone by default; see :mod:`.appliance_settings`) unless the
job was given one of its own. Daylight saving time follows one rule, so that a
daily job never runs twice or not at all:

- a wall time that does not exist (skipped by the spring change, e.g. 02:30 in
  Europe/Berlin on the last Sunday of March) fires once, at the instant the clock
  jumps (03:00 local);
- a wall time that occurs twice (the autumn change) fires once, at its first
  occurrence (summer time).

Several fire times that collapse onto the same instant fire once. A scheduler that
was down fires a schedule once for all the times it missed, and never queues a
second run of a job that already has one waiting (a retry in its back-off counts).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from sqlalchemy import select

from ..catalog.database import Catalog
from ..catalog.models import Job, Run, RunState, Schedule, utcnow
from . import runs

log = logging.getLogger(__name__)

# No cron expression has a gap longer than this (Feb 29 on a given weekday: 28 years).
_MAX_ITERATIONS = 100_000


def zone(name: str) -> ZoneInfo:
    """The time zone ``name``; ValueError for an unknown one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


def validate_cron(expr: str) -> str:
    """The expression, stripped; ValueError when croniter cannot parse it."""
    expr = " ".join(expr.split())
    if len(expr.split()) != 5 or not croniter.is_valid(expr):
        raise ValueError(f"invalid cron expression {expr!r} (want 5 fields: m h dom mon dow)")
    return expr


def _to_utc(wall: datetime, tz: ZoneInfo) -> datetime:
    """The instant a naive local wall time denotes, by the module's DST rule."""
    first = wall.replace(tzinfo=tz, fold=0)
    if first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall:
        return first.astimezone(UTC)  # exists (fold=0 is the first of two occurrences)
    # Inside a gap: find the transition, the first instant whose wall time is past it.
    lo = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)  # before the jump
    hi = first.astimezone(UTC)  # after the jump
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        if mid.astimezone(tz).replace(tzinfo=None) > wall:
            hi = mid
        else:
            lo = mid
    return hi.replace(microsecond=0)


def fire_times(cron: str, tz_name: str, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` fire times strictly after ``after``, as aware UTC datetimes."""
    if after.tzinfo is None:
        raise ValueError("after must be time-zone aware")
    tz = zone(tz_name)
    expr = validate_cron(cron)
    # Start one day early on the wall clock: fire times in a repeated hour may map
    # to instants before `after` and are filtered below.
    wall_after = after.astimezone(tz).replace(tzinfo=None, fold=0)
    it = croniter(expr, wall_after - timedelta(days=1))
    out: list[datetime] = []
    last = after
    for _ in range(_MAX_ITERATIONS):
        if len(out) == count:
            break
        instant = _to_utc(it.get_next(datetime), tz)
        if instant <= last:
            continue
        out.append(instant)
        last = instant
    return out


def next_fire(cron: str, tz_name: str, after: datetime) -> datetime:
    """The first fire time strictly after ``after`` (aware UTC)."""
    times = fire_times(cron, tz_name, after, 1)
    if not times:
        raise ValueError(f"cron expression {cron!r} never fires")
    return times[0]


def next_runs(schedule: Schedule, n: int = 5, now: datetime | None = None) -> list[datetime]:
    """The next ``n`` times ``schedule`` fires after ``now`` (default: the current time)."""
    return fire_times(schedule.cron, schedule.timezone, now or utcnow(), n)


def tick(catalog: Catalog, now: datetime | None = None) -> list[int]:
    """Queue a run for every enabled schedule whose next fire time has passed.

    A schedule that has never been evaluated only gets its next fire time. Returns
    the ids of the runs queued.
    """
    now = now or utcnow()
    queued: list[int] = []
    with catalog.session() as s:
        q = select(Schedule).join(Job).where(Schedule.enabled.is_(True), Job.enabled.is_(True))
        if catalog.is_postgresql:
            # Two schedulers on one catalog each take different schedules.
            q = q.with_for_update(skip_locked=True, of=Schedule)
        for sched in s.scalars(q).all():
            try:
                if sched.next_run_at is None:
                    sched.next_run_at = next_fire(sched.cron, sched.timezone, now)
                    continue
                if sched.next_run_at > now:
                    continue
                missed = sched.next_run_at
                sched.last_fired_at = now
                sched.next_run_at = next_fire(sched.cron, sched.timezone, now)
            except ValueError as exc:
                log.error("schedule %s of job %s is broken: %s", sched.id, sched.job_id, exc)
                sched.enabled = False
                continue
            waiting = s.scalar(
                select(Run.id).where(Run.job_id == sched.job_id, Run.state == RunState.QUEUED)
            )
            if waiting is not None:
                log.info(
                    "job %s already has run %s queued; schedule %s skipped",
                    sched.job_id,
                    waiting,
                    sched.id,
                )
                continue
            run = Run(
                job_id=sched.job_id,
                # A copy job's runs are copies; every other job's are backups.
                kind="copy" if sched.job.kind == "copy" else "backup",
                level=sched.level,
                trigger="schedule",
                state=RunState.QUEUED,
                queued_at=now,
                params={"schedule_id": sched.id, "due_at": missed.isoformat()},
            )
            s.add(run)
            s.flush()
            queued.append(run.id)
    for run_id in queued:
        runs.log_line(catalog, run_id, "queued by its schedule")
    return queued
