"""Changing and removing pools, retention policies and jobs once they exist.

Every function checks everything first and changes the catalog in one
transaction, so a refused change leaves nothing half done. Refusals that protect
data (a pool still holding recovery points, a policy still in use) raise
:class:`TapirError`; malformed input raises ValueError; unknown names KeyError.

What may change on a pool is what its medium does not record: the retention
policy and the concurrency limit. Compression, encryption and the media plugin's
options are written into the repository on the medium when it is created.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import func, select

from ..catalog.lookup import id_by_name
from ..catalog.models import (
    ConsistencyGroup,
    ConsistencyGroupMember,
    Job,
    Pool,
    RecoveryPoint,
    RetentionPolicy,
    Run,
    RunState,
    Schedule,
    Volume,
    utcnow,
)
from ..plugin_api.errors import TapirError
from . import scheduler
from .assets import jsonable
from .context import EngineContext
from .copy import COPY_KIND
from .retention import RULE_NAMES


class Keep(enum.Enum):
    """The "leave as it is" value of an optional field in an update."""

    KEEP = "keep"


KEEP: Final = Keep.KEEP


@dataclass
class Changes:
    """What an update changed, field by field (old, new), for the audit log."""

    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    def note(self, name: str, old: Any, new: Any) -> None:
        if old != new:
            self.fields[name] = (old, new)

    def audit_details(self) -> dict[str, Any]:
        return {k: {"from": old, "to": new} for k, (old, new) in self.fields.items()}


def _policy_id(s: Any, name: str | None) -> int | None:
    return None if name is None else id_by_name(s, RetentionPolicy, name, "retention policy")


def _policy_name(s: Any, policy_id: int | None) -> str | None:
    if policy_id is None:
        return None
    return s.scalar(select(RetentionPolicy.name).where(RetentionPolicy.id == policy_id))


# Pools


def update_pool(
    env: EngineContext,
    name: str,
    *,
    retention: str | Keep | None = KEEP,
    max_concurrent_runs: int | Keep | None = KEEP,
) -> Changes:
    """Set or clear (None) the pool's retention policy and concurrency limit."""
    if not isinstance(max_concurrent_runs, Keep) and max_concurrent_runs is not None:
        if isinstance(max_concurrent_runs, bool) or not isinstance(max_concurrent_runs, int):
            raise ValueError("max_concurrent_runs must be a whole number")
        if max_concurrent_runs < 1:
            raise ValueError("max_concurrent_runs must be at least 1 (or empty: no limit)")
    changes = Changes()
    with env.catalog.session() as s:
        pool = s.get(Pool, id_by_name(s, Pool, name, "pool"))
        assert pool is not None
        if not isinstance(retention, Keep):
            old = _policy_name(s, pool.retention_policy_id)
            pool.retention_policy_id = _policy_id(s, retention)
            changes.note("retention", old, retention)
        if not isinstance(max_concurrent_runs, Keep):
            changes.note("max_concurrent_runs", pool.max_concurrent_runs, max_concurrent_runs)
            pool.max_concurrent_runs = max_concurrent_runs
    return changes


def pool_users(env: EngineContext, name: str) -> list[str]:
    """Why the pool cannot be deleted now: its points, jobs, copy jobs and cartridges."""
    reasons = []
    with env.catalog.session() as s:
        pool_id = id_by_name(s, Pool, name, "pool")
        points = s.scalar(
            select(func.count(RecoveryPoint.id)).where(RecoveryPoint.pool_id == pool_id)
        )
        if points:
            reasons.append(f"it holds {points} recovery point(s)")
        jobs = list(s.scalars(select(Job.name).where(Job.pool_id == pool_id).order_by(Job.name)))
        if jobs:
            reasons.append(f"job(s) {', '.join(jobs)} write to it")
        copies = [
            j.name
            for j in s.scalars(select(Job).where(Job.kind == COPY_KIND).order_by(Job.name))
            if (j.selection or {}).get("source_pool") == name
        ]
        if copies:
            reasons.append(f"copy job(s) {', '.join(copies)} read from it")
        volumes = s.scalar(select(func.count(Volume.id)).where(Volume.pool_id == pool_id))
        if volumes:
            reasons.append(f"{volumes} cartridge(s) or volume(s) are assigned to it")
    return reasons


def delete_pool(env: EngineContext, name: str) -> Pool:
    """Remove an unused pool from the catalog; the medium's files are left where they are.

    Refused (TapirError, nothing changed) while the pool holds a recovery point, a
    job writes to it, a copy job reads from it or a cartridge is assigned to it.
    """
    reasons = pool_users(env, name)
    if reasons:
        raise TapirError(f"pool {name!r} cannot be deleted: {'; '.join(reasons)}")
    with env.catalog.session() as s:
        pool = s.scalar(select(Pool).where(Pool.name == name))
        if pool is None:
            raise KeyError(f"no pool named {name!r}")
        s.delete(pool)
        return pool


# Retention policies


def check_rules(rules: dict[str, int | None]) -> dict[str, int | None]:
    """Every rule name known, every value a whole number >= 0 or None, at least one set."""
    unknown = sorted(set(rules) - set(RULE_NAMES))
    if unknown:
        raise ValueError(f"unknown retention rules: {', '.join(unknown)}")
    for rule, value in rules.items():
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 0
        ):
            raise ValueError(f"{rule} must be a whole number >= 0, not {value!r}")
    full = {name: rules.get(name) for name in RULE_NAMES}
    if not any(full.values()):
        raise ValueError("a retention policy needs at least one rule")
    return full


def update_retention_policy(env: EngineContext, name: str, rules: dict[str, int | None]) -> Changes:
    """Replace every rule of the policy (a rule not given is cleared)."""
    full = check_rules(rules)
    changes = Changes()
    with env.catalog.session() as s:
        policy = s.get(RetentionPolicy, id_by_name(s, RetentionPolicy, name, "retention policy"))
        assert policy is not None
        for rule, value in full.items():
            changes.note(rule, getattr(policy, rule), value)
            setattr(policy, rule, value)
    return changes


def delete_retention_policy(env: EngineContext, name: str) -> None:
    """Delete a policy no pool or job uses (TapirError naming them otherwise)."""
    with env.catalog.session() as s:
        policy_id = id_by_name(s, RetentionPolicy, name, "retention policy")
        pools = list(
            s.scalars(
                select(Pool.name).where(Pool.retention_policy_id == policy_id).order_by(Pool.name)
            )
        )
        jobs = list(
            s.scalars(
                select(Job.name).where(Job.retention_policy_id == policy_id).order_by(Job.name)
            )
        )
        if pools or jobs:
            users = [f"pool {p}" for p in pools] + [f"job {j}" for j in jobs]
            raise TapirError(
                f"retention policy {name!r} is in use by {', '.join(users)}; "
                "give them another policy first"
            )
        policy = s.get(RetentionPolicy, policy_id)
        s.delete(policy)


# Jobs


def check_job_options(env: EngineContext, plugin: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` checked against the source plugin's declared job options."""
    source = env.registry.source_plugin(plugin)
    specs = {o.name: o for o in source.job_options()}
    if specs:
        unknown = sorted(set(options) - set(specs))
        if unknown:
            raise ValueError(
                f"plugin {plugin!r} has no job option {', '.join(unknown)} "
                f"(known: {', '.join(sorted(specs))})"
            )
        missing = [n for n, o in specs.items() if o.required and n not in options]
        if missing:
            raise ValueError(f"plugin {plugin!r} needs the job option {', '.join(missing)}")
    return jsonable(dict(options))


def update_job(
    env: EngineContext,
    name: str,
    *,
    options: dict[str, Any] | Keep = KEEP,
    schedule: str | Keep | None = KEEP,
    timezone: str | None = None,
    pool: str | Keep = KEEP,
    retention: str | Keep | None = KEEP,
    default_timezone: str = "UTC",
) -> Changes:
    """Change a job's plugin options (replaced whole), schedule, pool or retention policy.

    ``schedule`` replaces the job's schedules by one cron expression in ``timezone``
    (default: the current schedule's zone; a schedule without a zone of its own
    follows the appliance's, ``default_timezone``), or removes
    them (None: the job runs only when started). Moving a job to another pool starts
    new chains there; its points in the old pool stay.
    """
    changes = Changes()
    with env.catalog.session() as s:
        job = s.scalar(select(Job).where(Job.name == name))
        if job is None:
            raise KeyError(f"no job named {name!r}")
        if not isinstance(options, Keep):
            if job.kind == COPY_KIND:
                raise ValueError(f"job {name!r} copies recovery points: it has no plugin options")
            checked = check_job_options(env, job.plugin, options)
            changes.note("options", dict(job.options or {}), checked)
            job.options = checked
        if not isinstance(pool, Keep):
            pool_id = id_by_name(s, Pool, pool, "pool")
            if job.kind == COPY_KIND and (job.selection or {}).get("source_pool") == pool:
                raise ValueError("a copy job needs two different pools")
            old_pool = s.scalar(select(Pool.name).where(Pool.id == job.pool_id))
            changes.note("pool", old_pool, pool)
            job.pool_id = pool_id
        if not isinstance(retention, Keep):
            changes.note("retention", _policy_name(s, job.retention_policy_id), retention)
            job.retention_policy_id = _policy_id(s, retention)
        if not isinstance(schedule, Keep) or timezone is not None:
            _replace_schedule(job, schedule, timezone, default_timezone, changes)
    return changes


def _replace_schedule(
    job: Job,
    schedule: str | Keep | None,
    timezone: str | None,
    default_timezone: str,
    changes: Changes,
) -> None:
    current = job.schedules[0] if job.schedules else None
    old_cron = current.cron if current else None
    old_tz = current.timezone if current else None
    cron = old_cron if isinstance(schedule, Keep) else schedule
    if cron is not None and not cron.strip():
        cron = None
    # A schedule given no zone of its own keeps following the appliance's time zone.
    follows = timezone is None and (current is None or bool(current.zone_from_appliance))
    tz = timezone or (default_timezone if follows else old_tz) or default_timezone
    if cron is None:
        if timezone is not None and isinstance(schedule, Keep) and old_cron is None:
            raise ValueError("a time zone needs a schedule")
        job.schedules.clear()
        changes.note("schedule", old_cron, None)
        return
    cron = scheduler.validate_cron(cron)
    scheduler.zone(tz)
    if (cron, tz) == (old_cron, old_tz) and len(job.schedules) == 1:
        return
    job.schedules.clear()
    job.schedules.append(
        Schedule(
            cron=cron,
            timezone=tz,
            zone_from_appliance=follows,
            next_run_at=scheduler.next_fire(cron, tz, utcnow()),
        )
    )
    changes.note("schedule", old_cron, cron)
    changes.note("timezone", old_tz, tz)


def set_job_enabled(env: EngineContext, name: str, enabled: bool) -> bool:
    """Enable or disable a job; returns whether it changed. A disabled job is not
    scheduled and cannot be started; its queued runs stay queued until canceled."""
    with env.catalog.session() as s:
        job = s.scalar(select(Job).where(Job.name == name))
        if job is None:
            raise KeyError(f"no job named {name!r}")
        changed = bool(job.enabled) != enabled
        job.enabled = enabled
        if enabled:
            # Disabled time is not made up for: the next run is the next one from now.
            now = utcnow()
            for sched in job.schedules:
                if sched.enabled:
                    sched.next_run_at = scheduler.next_fire(sched.cron, sched.timezone, now)
    return changed


def delete_job(env: EngineContext, name: str) -> int:
    """Delete a job and its schedules; its recovery points and run history stay (no
    longer linked to a job). Refused while one of its runs is queued or running.
    Returns how many recovery points it leaves behind."""
    with env.catalog.session() as s:
        job = s.scalar(select(Job).where(Job.name == name))
        if job is None:
            raise KeyError(f"no job named {name!r}")
        busy = s.scalar(
            select(func.count(Run.id)).where(
                Run.job_id == job.id, Run.state.in_((RunState.QUEUED, RunState.RUNNING))
            )
        )
        if busy:
            raise TapirError(f"job {name!r} has {busy} queued or running run(s); cancel them first")
        copies = [
            j.name
            for j in s.scalars(select(Job).where(Job.kind == COPY_KIND))
            if name in ((j.selection or {}).get("jobs") or [])
        ]
        if copies:
            raise TapirError(
                f"job {name!r} is named by copy job(s) {', '.join(sorted(copies))}; "
                "change or delete them first"
            )
        groups = list(
            s.scalars(
                select(ConsistencyGroup.name)
                .join(
                    ConsistencyGroupMember, ConsistencyGroupMember.group_id == ConsistencyGroup.id
                )
                .where(ConsistencyGroupMember.job_id == job.id)
            )
        )
        if groups:
            raise TapirError(
                f"job {name!r} is a member of consistency group(s) {', '.join(sorted(groups))}; "
                "delete the group first (its recovery points stay)"
            )
        points = s.scalar(
            select(func.count(RecoveryPoint.id)).where(RecoveryPoint.job_id == job.id)
        )
        # Explicit rather than relying on ON DELETE SET NULL, which SQLite enforces only
        # with its foreign_keys pragma.
        for rp in s.scalars(select(RecoveryPoint).where(RecoveryPoint.job_id == job.id)):
            rp.job_id = None
        for run in s.scalars(select(Run).where(Run.job_id == job.id)):
            run.job_id = None
        s.delete(job)
    return int(points or 0)
