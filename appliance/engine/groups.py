"""Consistency groups: which jobs are frozen together, their freeze window and schedule.

A group names ordinary backup jobs (its members), at least one of an application
plugin. A group run (:mod:`.group_run`) freezes every application member's assets,
names the moment on each (the plugins' ``mark``), takes every VM member's snapshot,
thaws them, then backs each member up so that its point can go back to that mark;
:mod:`.group_restore` restores the members of one group run together.
"""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from ..catalog.models import ConsistencyGroup, ConsistencyGroupMember, GroupRun, Job, utcnow
from ..plugin_api.errors import TapirError
from ..plugin_api.roles import ApplicationPlugin, HypervisorPlugin
from .context import EngineContext
from .copy import COPY_KIND
from .pools import validate_name
from .scheduler import next_fire, validate_cron, zone

DEFAULT_FREEZE_WINDOW = 10.0
#: A longer freeze stops writers for longer than any application tolerates.
MAX_FREEZE_WINDOW = 600.0
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$")


def parse_window(text: str | float) -> float:
    """Seconds from ``10``, ``10s``, ``500ms`` or ``1m``; ValueError out of (0, 600] s."""
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        match = _DURATION.match(text)
        if not match:
            raise ValueError(f"freeze window {text!r} is not a duration like 10s, 500ms or 1m")
        unit = match.group(2) or "s"
        seconds = float(match.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[unit]
    if not 0 < seconds <= MAX_FREEZE_WINDOW:
        raise ValueError(
            f"freeze window must be above 0 and at most {MAX_FREEZE_WINDOW:g} s, not {seconds:g} s"
        )
    return seconds


def _query() -> object:
    return select(ConsistencyGroup).options(
        selectinload(ConsistencyGroup.members).selectinload(ConsistencyGroupMember.job)
    )


def check_member(env: EngineContext, job: Job) -> None:
    """Refuse a job that cannot join a group, saying why."""
    if job.kind == COPY_KIND:
        raise TapirError(f"job {job.name!r} copies recovery points; a group member backs up")
    plugin = env.registry.source_plugin(job.plugin)
    if not isinstance(plugin, ApplicationPlugin | HypervisorPlugin):
        raise TapirError(f"job {job.name!r} ({job.plugin}) backs up neither applications nor VMs")


def _is_application(env: EngineContext, job: Job) -> bool:
    return isinstance(env.registry.source_plugin(job.plugin), ApplicationPlugin)


def create_group(
    env: EngineContext,
    name: str,
    members: list[str],
    *,
    freeze_window: float | str = DEFAULT_FREEZE_WINDOW,
    schedule: str | None = None,
    timezone: str = "UTC",
    now: datetime | None = None,
) -> ConsistencyGroup:
    """Create a group of the jobs ``members`` (at least two, each once)."""
    validate_name("group", name)
    window = parse_window(freeze_window)
    if len(members) < 2:
        raise ValueError("a consistency group needs at least two member jobs")
    duplicates = sorted({m for m in members if members.count(m) > 1})
    if duplicates:
        raise ValueError(f"member jobs named more than once: {', '.join(duplicates)}")
    cron = validate_cron(schedule) if schedule else None
    zone(timezone)
    with env.catalog.session() as s:
        if s.scalar(select(ConsistencyGroup.id).where(ConsistencyGroup.name == name)):
            raise ValueError(f"a consistency group named {name!r} exists already")
        jobs = {j.name: j for j in s.scalars(select(Job).where(Job.name.in_(members)))}
        missing = [m for m in members if m not in jobs]
        if missing:
            raise KeyError(f"no job named {', '.join(map(repr, missing))}")
        for member in members:
            check_member(env, jobs[member])
        if not any(_is_application(env, jobs[m]) for m in members):
            raise ValueError(
                "a consistency group needs at least one application member job: its VM "
                "snapshots are taken while the applications are frozen"
            )
        group = ConsistencyGroup(
            name=name,
            freeze_window=window,
            schedule=cron,
            timezone=timezone,
            next_run_at=next_fire(cron, timezone, now or utcnow()) if cron else None,
        )
        group.members = [
            ConsistencyGroupMember(job_id=jobs[m].id, position=i) for i, m in enumerate(members)
        ]
        s.add(group)
    return get_group(env, name)


def get_group(env: EngineContext, name: str) -> ConsistencyGroup:
    """The group ``name`` with its member jobs loaded; KeyError when unknown."""
    with env.catalog.session() as s:
        group = s.scalar(_query().where(ConsistencyGroup.name == name))  # type: ignore[attr-defined]
        if group is None:
            raise KeyError(f"no consistency group named {name!r}")
        return group


def list_groups(env: EngineContext) -> list[ConsistencyGroup]:
    """Every group, by name."""
    with env.catalog.session() as s:
        return list(s.scalars(_query().order_by(ConsistencyGroup.name)))  # type: ignore[attr-defined]


def delete_group(env: EngineContext, name: str) -> int:
    """Delete a group and its run records (the members' points stay); returns its run count."""
    with env.catalog.session() as s:
        group = s.scalar(select(ConsistencyGroup).where(ConsistencyGroup.name == name))
        if group is None:
            raise KeyError(f"no consistency group named {name!r}")
        count = len(list(s.scalars(select(GroupRun.id).where(GroupRun.group_id == group.id))))
        s.delete(group)
        return count


def member_names(group: ConsistencyGroup) -> list[str]:
    """The member jobs' names, in the order they were given."""
    return [m.job.name for m in group.members]


def due_groups(env: EngineContext, now: datetime | None = None) -> list[str]:
    """Names of scheduled groups whose time has come; their next time is moved on."""
    now = now or utcnow()
    due: list[str] = []
    with env.catalog.session() as s:
        for group in s.scalars(
            select(ConsistencyGroup).where(ConsistencyGroup.schedule.is_not(None))
        ):
            assert group.schedule is not None
            if group.next_run_at is None:
                group.next_run_at = next_fire(group.schedule, group.timezone, now)
            elif group.next_run_at <= now:
                group.next_run_at = next_fire(group.schedule, group.timezone, now)
                due.append(group.name)
    return due
