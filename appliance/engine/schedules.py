"""A job's schedules: a job may run on several, each with its own level.

The usual case is a database: a full backup weekly and its transaction log every
few minutes (``level="log"``), both on one job so that they form one chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from ..catalog.models import Job, Schedule, utcnow
from ..plugin_api.errors import TapirError
from . import scheduler
from .context import EngineContext

LEVELS = ("auto", "full", "incremental", "log")


@dataclass(frozen=True)
class ScheduleInfo:
    """One schedule of a job, as the CLI and the panel show it."""

    id: int
    job: str
    cron: str
    timezone: str
    level: str
    enabled: bool
    next_run_at: datetime | None


def _info(row: Schedule, job: str) -> ScheduleInfo:
    return ScheduleInfo(
        row.id, job, row.cron, row.timezone, row.level, row.enabled, row.next_run_at
    )


def add_schedule(
    env: EngineContext,
    job_name: str,
    cron: str,
    *,
    level: str,
    timezone: str | None,
    default_tz: str,
) -> ScheduleInfo:
    """Add a schedule to ``job_name``; ValueError for a bad cron, level or zone."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
    expr = scheduler.validate_cron(cron)
    tz = timezone or default_tz
    scheduler.zone(tz)
    with env.catalog.session() as s:
        job = s.scalar(select(Job).where(Job.name == job_name))
        if job is None:
            raise KeyError(f"no job named {job_name!r}")
        if level == "log" and job.kind == "copy":
            raise TapirError("a copy job has no log level")
        row = Schedule(
            cron=expr,
            timezone=tz,
            level=level,
            zone_from_appliance=timezone is None,
            next_run_at=scheduler.next_fire(expr, tz, utcnow()),
        )
        job.schedules.append(row)
        s.flush()
        return _info(row, job.name)


def schedules(env: EngineContext, job_name: str) -> list[ScheduleInfo]:
    """Every schedule of ``job_name``, oldest first."""
    with env.catalog.session() as s:
        job = s.scalar(select(Job).where(Job.name == job_name))
        if job is None:
            raise KeyError(f"no job named {job_name!r}")
        return [_info(r, job.name) for r in sorted(job.schedules, key=lambda r: r.id)]


def remove_schedule(env: EngineContext, job_name: str, schedule_id: int) -> None:
    """Remove one schedule of ``job_name`` (KeyError when it has no such schedule)."""
    with env.catalog.session() as s:
        row = s.get(Schedule, schedule_id)
        if row is None or row.job.name != job_name:
            raise KeyError(f"job {job_name!r} has no schedule {schedule_id}")
        s.delete(row)
