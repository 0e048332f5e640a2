"""Restoring a consistency group: every member's point of one group run, to the group's mark.

Each member point is restored into ``DIR/<job>`` (``DIR/<job>/<asset>`` when the
job has several assets) through its own plugin, with the restore options the
plugin derives from its mark (``ApplicationPlugin.mark_restore_options``:
PostgreSQL's ``target_name``, MariaDB's ``stop_position``) over the options the
operator gave. Only a succeeded group run can be restored: a failed one has no
common moment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from ..catalog.models import ConsistencyGroup, GroupRun, RecoveryPoint, RunState
from ..plugin_api.errors import TapirError
from ..plugin_api.roles import ApplicationPlugin, RestoreResult
from .backup import describe_error
from .context import EngineContext
from .restore import restore_point


@dataclass
class MemberRestore:
    """How one member point was restored."""

    job: str
    asset: str
    point: str
    target: Path
    options: dict[str, object]
    result: RestoreResult | None = None
    error: str | None = None


@dataclass
class GroupRestore:
    """The outcome of a group restore: one entry per member point."""

    group: str
    group_run: int
    members: list[MemberRestore] = field(default_factory=list)

    @property
    def failed(self) -> list[MemberRestore]:
        return [m for m in self.members if m.error or (m.result is not None and m.result.failed)]


def group_run_to_restore(env: EngineContext, group: str, run_id: int | None) -> GroupRun:
    """The group run ``run_id`` (it must have succeeded), or the group's newest succeeded one."""
    with env.catalog.session() as s:
        g = s.scalar(select(ConsistencyGroup).where(ConsistencyGroup.name == group))
        if g is None:
            raise KeyError(f"no consistency group named {group!r}")
        q = (
            select(GroupRun)
            .options(selectinload(GroupRun.members))
            .where(GroupRun.group_id == g.id)
        )
        if run_id is not None:
            grun = s.scalar(q.where(GroupRun.id == run_id))
            if grun is None:
                raise KeyError(f"group {group!r} has no run {run_id}")
            if grun.state != RunState.SUCCEEDED:
                raise TapirError(
                    f"group run {run_id} of {group!r} {grun.state}: it has no common moment to "
                    f"restore ({grun.error or 'not finished'})"
                )
            return grun
        grun = s.scalar(
            q.where(GroupRun.state == RunState.SUCCEEDED).order_by(GroupRun.id.desc()).limit(1)
        )
        if grun is None:
            raise TapirError(f"group {group!r} has no succeeded run to restore")
        return grun


def restore_group(
    env: EngineContext,
    group: str,
    target: Path,
    worker: str,
    *,
    run_id: int | None = None,
    options: dict[str, object] | None = None,
    member_options: dict[str, dict[str, object]] | None = None,
    overwrite: str = "never",
) -> GroupRestore:
    """Restore every member point of one group run under ``target``; goes on past a failed
    member and reports each (``GroupRestore.failed``)."""
    grun = group_run_to_restore(env, group, run_id)
    member_options = dict(member_options or {})
    unknown = sorted(set(member_options) - {m.job_name for m in grun.members})
    if unknown:
        raise ValueError(f"not a member of group {group!r}: {', '.join(unknown)}")
    per_job: dict[str, int] = {}
    for m in grun.members:
        per_job[m.job_name] = per_job.get(m.job_name, 0) + 1
    report = GroupRestore(group, grun.id)
    for m in grun.members:
        if m.recovery_point_id is None:
            raise TapirError(f"group run {grun.id}: member {m.job_name} has no recovery point")
        with env.catalog.session() as s:
            rp = s.get(RecoveryPoint, m.recovery_point_id)
            plugin_name = rp.plugin if rp is not None else None
        if rp is None or plugin_name is None:
            raise TapirError(
                f"group run {grun.id}: the point {m.recovery_point_id} of member {m.job_name} "
                "was pruned; the group can no longer be restored together"
            )
        plugin = env.registry.source_plugin(plugin_name)
        opts: dict[str, object] = {**(options or {}), **member_options.get(m.job_name, {})}
        if isinstance(plugin, ApplicationPlugin) and m.mark:
            opts.update(plugin.mark_restore_options(dict(m.mark)))
        where = target / m.job_name
        if per_job[m.job_name] > 1:
            where = where / m.asset_name
        entry = MemberRestore(m.job_name, m.asset_name, m.recovery_point_id, where, opts)
        report.members.append(entry)
        try:
            _, entry.result = restore_point(
                env, m.recovery_point_id, worker, target=where, overwrite=overwrite, options=opts
            )
        except Exception as exc:
            entry.error = describe_error(exc)
    return report
