"""One run of a consistency group: freeze all, mark all, thaw all, then back up each.

All or nothing. (1) Every member asset is frozen in parallel; when one cannot
freeze within the group's window (an error, or no answer in time), every member
is thawed (a late freeze is thawed as soon as it returns) and the run fails naming
the member and the reason; nothing is backed up. (2) While all are frozen, each
plugin names the moment (``ApplicationPlugin.mark``). (3) Every member is thawed,
whatever happened. The time from the first freeze call to the last thaw's return
is measured and recorded; a run that overran the window fails. (4) Each member
job is backed up in a run of its own (trigger ``group``), with its mark in
``request.options["consistency_mark"]``; a member whose plugin keeps logs
(capability ``log``) is backed up at level log so that its point holds the log up
to the mark, after a full backup taken before the freeze when it has none yet.
The group run succeeds only when every member's backup does.

A hypervisor member (a VM job) is not frozen: its backup starts in a thread at
the beginning and its snapshot is taken inside the freeze window, after every
application member is marked and before they are thawed (:mod:`.group_snapshot`);
its transfer goes on after the thaw. A job of several VMs runs one backup run per
VM, so that every snapshot can be taken inside the window.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from ..catalog.models import (
    Endpoint,
    GroupRun,
    GroupRunMember,
    Job,
    Pool,
    RecoveryPoint,
    Run,
    RunState,
    utcnow,
)
from ..plugin_api.context import AssetInfo, EndpointInfo, PluginContext
from ..plugin_api.errors import RunCanceled, TapirError
from ..plugin_api.roles import ApplicationPlugin, BackupLevel, SourcePlugin
from . import runs
from .backup import backup_asset, conduct_run, describe_error, resolve_assets
from .context import EngineContext
from .group_snapshot import GROUP_KEY, MemberSnapshot, SnapshotGate
from .groups import check_member, get_group
from .monitor import RunMonitor
from .pools import open_repository
from .rule_assets import select_by_rules
from .selection import RuleSet

log = logging.getLogger(__name__)

#: How long a thaw may take before the run stops waiting for it (it is never abandoned).
_THAW_WAIT = 60.0


class FreezeFailed(TapirError):
    """Freeze, mark or thaw failed, or the window was overrun; ``seconds`` were frozen."""

    def __init__(self, message: str, seconds: float) -> None:
        super().__init__(message)
        self.seconds = seconds


@dataclass
class Member:
    """One asset of one member job, as the run handles it."""

    job: Job
    pool: Pool
    endpoint: EndpointInfo | None
    endpoint_id: int | None
    plugin: SourcePlugin
    asset_id: int
    asset: AssetInfo
    run_id: int = 0
    mark: dict[str, Any] = field(default_factory=dict)
    point: str | None = None
    error: str | None = None

    @property
    def title(self) -> str:
        return f"{self.job.name} ({self.asset.name})"


class _JobWithOptions:
    """A member job as the backup sees it: its own options plus the group's mark."""

    def __init__(self, job: Job, extra: dict[str, Any]) -> None:
        self._job = job
        self.options = {**dict(job.options or {}), **extra}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._job, name)


def run_group(
    env: EngineContext,
    name: str,
    worker: str,
    *,
    level: str = "auto",
    trigger: str = "manual",
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Run group ``name`` to its end; returns the group run's id (never raises for a
    failed run: its state and error say what happened)."""
    group = get_group(env, name)
    with env.catalog.session() as s:
        grun = GroupRun(group_id=group.id, state=RunState.RUNNING, trigger=trigger)
        s.add(grun)
        s.flush()
        grun.label = f"tapir-group-{group.name}-{grun.id}"
        grun_id, label = grun.id, grun.label
    members: list[Member] = []
    try:
        jobs = [m.job for m in group.members]
        for job in jobs:
            check_member(env, job)  # a plugin may have changed since the group was made
            if not job.enabled:
                raise TapirError(f"member job {job.name!r} is disabled: enable it to run the group")
        members = resolve_members(env, jobs, grun_id)
        apps = [m for m in members if isinstance(m.plugin, ApplicationPlugin)]
        vms = [m for m in members if not isinstance(m.plugin, ApplicationPlugin)]
        _ensure_bases(env, apps, worker, grun_id)
        if not apps:
            raise TapirError("a consistency group needs an application member to freeze")
        gate = SnapshotGate([m.title for m in vms], label)
        threads: list[threading.Thread] = []
        try:
            _start_vm_backups(env, vms, gate, worker, level, grun_id, threads)
            freeze_seconds = _freeze_mark_thaw(
                env, apps, group.freeze_window, label, clock, gate if vms else None
            )
            _set(env, grun_id, freeze_seconds=freeze_seconds)
            _note(grun_id, f"all members frozen, marked and thawed in {freeze_seconds:.3f} s")
            _backup_members(env, apps, worker, level, grun_id)
        finally:
            # The first verdict wins: after a failure before it, no VM waits forever.
            gate.settle(in_time=False)
            for t in threads:
                t.join()
    except Exception as exc:
        log.exception("group run %s of %s failed", grun_id, name)
        if isinstance(exc, FreezeFailed):
            _set(env, grun_id, freeze_seconds=exc.seconds)
        _finish(env, grun_id, members, RunState.FAILED, describe_error(exc))
        return grun_id
    failed = [m for m in members if m.point is None]
    if failed:
        error = "; ".join(f"member {m.title}: {m.error or 'no recovery point'}" for m in failed)
        _finish(env, grun_id, members, RunState.FAILED, f"group run failed: {error}")
    else:
        _finish(env, grun_id, members, RunState.SUCCEEDED, None)
    return grun_id


def _note(grun_id: int, message: str) -> None:
    log.info("group run %s: %s", grun_id, message)


def _set(env: EngineContext, grun_id: int, **values: Any) -> None:
    with env.catalog.session() as s:
        grun = s.get(GroupRun, grun_id)
        assert grun is not None
        for key, value in values.items():
            setattr(grun, key, value)


def _finish(
    env: EngineContext, grun_id: int, members: list[Member], state: str, error: str | None
) -> None:
    with env.catalog.session() as s:
        grun = s.get(GroupRun, grun_id)
        assert grun is not None
        grun.state = state
        grun.error = error
        grun.finished_at = utcnow()
        for m in members:
            ok = m.point is not None and state == RunState.SUCCEEDED
            grun.members.append(
                GroupRunMember(
                    job_name=m.job.name,
                    asset_name=m.asset.name,
                    run_id=m.run_id or None,
                    recovery_point_id=m.point,
                    mark=dict(m.mark),
                    state=RunState.SUCCEEDED if ok else RunState.FAILED,
                    error=m.error or (None if ok else error),
                )
            )


def resolve_members(env: EngineContext, jobs: list[Job], grun_id: int) -> list[Member]:
    """Every asset of every member job, discovered now (as a backup run would)."""
    out: list[Member] = []
    with env.catalog.session() as s:
        pools = {j.id: s.get(Pool, j.pool_id) for j in jobs}
        endpoints = {j.id: s.get(Endpoint, j.endpoint_id) if j.endpoint_id else None for j in jobs}
    for job in jobs:
        plugin = env.registry.source_plugin(job.plugin)
        ctx = env.plugin_context(job.plugin)
        endpoint = endpoints[job.id]
        info = (
            EndpointInfo(endpoint.name, endpoint.plugin, endpoint.address, dict(endpoint.options))
            if endpoint
            else None
        )
        rules = RuleSet.from_selection(job.selection)
        if rules is not None:
            sel = select_by_rules(env, job, rules, endpoint, plugin, ctx, discover=rules.discover)
            assets = [(sel.asset_ids[d.asset.external_id], d.asset) for d in sel.selected]
        else:
            assets = resolve_assets(env, plugin, job, endpoint, info, ctx)
        if not assets:
            raise TapirError(f"member {job.name}: no asset to back up (discovery found nothing)")
        pool = pools[job.id]
        assert pool is not None
        for asset_id, asset in assets:
            out.append(
                Member(job, pool, info, endpoint.id if endpoint else None, plugin, asset_id, asset)
            )
    _note(grun_id, f"{len(out)} member assets: {', '.join(m.title for m in out)}")
    return out


def _keeps_logs(member: Member) -> bool:
    return "log" in member.plugin.capabilities()


def _has_point(env: EngineContext, member: Member) -> bool:
    with env.catalog.session() as s:
        return (
            s.scalar(
                select(RecoveryPoint.id).where(
                    RecoveryPoint.job_id == member.job.id,
                    RecoveryPoint.asset_id == member.asset_id,
                    RecoveryPoint.pool_id == member.pool.id,
                )
            )
            is not None
        )


def _ensure_bases(env: EngineContext, members: list[Member], worker: str, grun_id: int) -> None:
    """A full backup, before any freeze, of each log-keeping member that has no point yet:
    its group point will be a log backup on top of it."""
    by_job: dict[int, list[Member]] = {}
    for m in members:
        if _keeps_logs(m) and not _has_point(env, m):
            by_job.setdefault(m.job.id, []).append(m)
    for job_members in by_job.values():
        job = job_members[0].job
        _note(grun_id, f"member {job.name}: no base yet, taking a full backup first")
        run_id = _start_run(env, job, BackupLevel.FULL, worker, grun_id)
        points = _conduct(env, run_id, job_members, worker, mark=False)
        missing = [m for m in job_members if m.asset_id not in points]
        if missing:
            raise TapirError(
                f"member {job.name}: the full backup its group point builds on failed: "
                f"{_run_error(env, run_id)}"
            )


def _run_error(env: EngineContext, run_id: int) -> str:
    with env.catalog.session() as s:
        run = s.get(Run, run_id)
        return (run.error if run else None) or "no recovery point"


def _freeze_mark_thaw(
    env: EngineContext,
    members: list[Member],
    window: float,
    label: str,
    clock: Callable[[], float],
    gate: SnapshotGate | None = None,
) -> float:
    """Freeze all, mark all, [let every VM member take its snapshot,] thaw all; returns
    the seconds from first freeze to last thaw.

    Raises TapirError (after every member thawed) when a member could not freeze in
    time, a mark failed, a snapshot was not taken in time, a thaw failed or the window
    was overrun.
    """
    ctxs = [env.plugin_context(m.job.plugin) for m in members]
    pool = ThreadPoolExecutor(max_workers=len(members), thread_name_prefix="tapir-freeze")
    started = clock()
    deadline = started + window
    freezes = [pool.submit(m.plugin.freeze, m.asset, c) for m, c in zip(members, ctxs, strict=True)]
    problems: list[str] = []
    late: list[int] = []
    try:
        wait(freezes, timeout=window)
        for i, (m, f) in enumerate(zip(members, freezes, strict=True)):
            if not f.done():
                late.append(i)
                problems.append(f"member {m.title} did not freeze within the {window:g} s window")
            elif f.exception() is not None:
                problems.append(f"member {m.title} could not freeze: {_reason(f.exception())}")
        if not problems:
            problems += _mark_all(pool, members, ctxs, label, deadline - clock())
        if gate is not None and not problems:
            gate.open()
            problems += gate.wait_taken(deadline - clock(), clock)
    finally:
        if gate is not None:
            # A VM not yet at its snapshot takes none now (harmless after the snapshots).
            gate.give_up("; ".join(problems) or "the freeze failed")
        # Whatever happened above, nobody stays frozen.
        thaw_problems = thaw_all(pool, members, ctxs, freezes, late)
        ended = clock()
        pool.shutdown(wait=False)
    elapsed = ended - started
    problems += thaw_problems
    if not problems and elapsed > window:
        problems.append(
            f"the freeze window was overrun: {elapsed:.3f} s from the first freeze to the last "
            f"thaw, more than {window:g} s"
        )
    if gate is not None:
        gate.settle(in_time=not problems)
    if problems:
        raise FreezeFailed(
            "group run failed, every member thawed, no recovery point kept: " + "; ".join(problems),
            elapsed,
        )
    return elapsed


def _reason(exc: BaseException | None) -> str:
    return describe_error(exc) if exc is not None else "unknown"


def _mark_all(
    pool: ThreadPoolExecutor,
    members: list[Member],
    ctxs: list[PluginContext],
    label: str,
    budget: float,
) -> list[str]:
    marks = [
        pool.submit(m.plugin.mark, m.asset, c, label) for m, c in zip(members, ctxs, strict=True)
    ]
    wait(marks, timeout=max(budget, 0.0))
    problems: list[str] = []
    for m, f in zip(members, marks, strict=True):
        if not f.done():
            problems.append(f"member {m.title}: no mark within the freeze window")
        elif f.exception() is not None:
            problems.append(f"member {m.title}: mark failed: {_reason(f.exception())}")
        else:
            m.mark = dict(f.result() or {})
    return problems


def thaw_all(
    pool: ThreadPoolExecutor,
    members: list[Member],
    ctxs: list[PluginContext],
    freezes: list[Future[None]],
    late: list[int],
) -> list[str]:
    """Thaw every member whose freeze returned; a late one is thawed when it returns."""
    thaws: dict[int, Future[None]] = {}
    for i, (m, c) in enumerate(zip(members, ctxs, strict=True)):
        if i in late or not freezes[i].done():
            freezes[i].add_done_callback(lambda f, m=m, c=c: _late_thaw(m, c, f))
        elif freezes[i].exception() is None:
            thaws[i] = pool.submit(m.plugin.thaw, m.asset, c)
    wait(thaws.values(), timeout=_THAW_WAIT)
    problems: list[str] = []
    for i, f in thaws.items():
        title = members[i].title
        if not f.done():
            problems.append(f"member {title}: thaw did not return within {_THAW_WAIT:g} s")
        elif f.exception() is not None:
            problems.append(f"member {title}: thaw failed: {_reason(f.exception())}")
    return problems


def _late_thaw(member: Member, ctx: PluginContext, freeze: Future[None]) -> None:
    if freeze.exception() is not None:
        return
    try:
        member.plugin.thaw(member.asset, ctx)
        log.warning("%s froze after the group gave up; thawed it", member.title)
    except Exception:
        log.exception("thawing %s after a late freeze failed", member.title)


def _start_run(env: EngineContext, job: Job, level: str, worker: str, grun_id: int) -> int:
    """A member's backup run, created already claimed by this worker (as ``run_job`` does)."""
    now = utcnow()
    with env.catalog.session() as s:
        run = Run(
            job_id=job.id,
            kind="backup",
            level=level,
            trigger="group",
            params={"group_run": grun_id},
            state=RunState.RUNNING,
            queued_at=now,
            started_at=now,
            heartbeat_at=now,
            worker=worker,
        )
        s.add(run)
        s.flush()
        return run.id


def _start_vm_backups(
    env: EngineContext,
    members: list[Member],
    gate: SnapshotGate,
    worker: str,
    level: str,
    grun_id: int,
    threads: list[threading.Thread],
) -> None:
    """One backup run per VM member, each in a thread (added to ``threads`` as it starts)
    waiting at its snapshot window."""
    for m in members:
        m.run_id = _start_run(env, m.job, level, worker, grun_id)
        thread = threading.Thread(
            target=_vm_backup, args=(env, m, gate, worker), name=f"tapir-group-vm-{m.asset_id}"
        )
        thread.start()
        threads.append(thread)


def _vm_backup(env: EngineContext, member: Member, gate: SnapshotGate, worker: str) -> None:
    try:
        snapshot = MemberSnapshot(gate, member.title)
        points = _conduct(
            env, member.run_id, [member], worker, mark=True, freezes={member.asset_id: snapshot}
        )
        member.point = points.get(member.asset_id)
        if member.point is None:
            member.error = _run_error(env, member.run_id)
        else:
            # Set only now: during the backup a mark would reach the plugin as an option.
            member.mark = {GROUP_KEY: gate.label}
    except Exception as exc:
        log.exception("group VM backup of %s failed", member.title)
        member.error = describe_error(exc)
    finally:
        # A backup that ended before its snapshot: the group need not wait for it.
        gate.failed(member.title, member.error or "the backup ended without a snapshot")


def _backup_members(
    env: EngineContext, members: list[Member], worker: str, level: str, grun_id: int
) -> None:
    by_job: dict[int, list[Member]] = {}
    for m in members:
        by_job.setdefault(m.job.id, []).append(m)
    for job_members in by_job.values():
        job = job_members[0].job
        member_level = BackupLevel.LOG if _keeps_logs(job_members[0]) else level
        run_id = _start_run(env, job, member_level, worker, grun_id)
        for m in job_members:
            m.run_id = run_id
        points = _conduct(env, run_id, job_members, worker, mark=True)
        for m in job_members:
            m.point = points.get(m.asset_id)
            if m.point is None:
                m.error = _run_error(env, run_id)


def _conduct(
    env: EngineContext,
    run_id: int,
    members: list[Member],
    worker: str,
    *,
    mark: bool,
    freezes: dict[int, MemberSnapshot] | None = None,
) -> dict[int, str]:
    """Back up ``members`` (assets of one job) in run ``run_id``; their points by asset id.

    ``freezes`` gives a VM member asset its group snapshot window.
    """
    with env.catalog.session() as s:
        run = s.get(Run, run_id)
    assert run is not None
    job, pool = members[0].job, members[0].pool
    points: dict[int, str] = {}

    def body(monitor: RunMonitor, outcome: Any) -> None:
        runs.log_line(
            env.catalog,
            run_id,
            f"group backup of job {job.name} ({job.plugin}) to pool {pool.name}"
            + ("" if mark else " (the base of its first group point)"),
        )
        ctx = env.plugin_context(
            job.plugin,
            run_id=run_id,
            progress=monitor.progress,
            check_canceled=monitor.check_canceled,
        )
        with open_repository(env, pool, monitor) as repo:
            for m in members:
                monitor.check_canceled()
                # Only a plugin that named a moment gets it: others may refuse unknown options.
                extra = {"consistency_mark": m.mark} if mark and m.mark else {}
                if extra:
                    runs.log_line(env.catalog, run_id, f"{m.asset.name}: group mark {m.mark}")
                try:
                    rp = backup_asset(
                        env,
                        run,
                        _JobWithOptions(job, extra),  # type: ignore[arg-type]
                        pool,
                        repo,
                        m.plugin,
                        m.asset_id,
                        m.asset,
                        m.endpoint,
                        ctx,
                        monitor,
                        # Duck-typed like snapshot_freeze.AssetFreeze: window() and annotate().
                        freeze=(freezes or {}).get(m.asset_id),  # type: ignore[arg-type]
                    )
                except RunCanceled:
                    raise
                except Exception as exc:
                    log.exception("run %s: backup of %s failed", run_id, m.asset.name)
                    message = f"{m.asset.name}: {describe_error(exc)}"
                    outcome.errors.append(message)
                    runs.log_line(env.catalog, run_id, f"backup of {message}", "ERROR")
                    continue
                points[m.asset_id] = rp.id
                outcome.recovery_points.append(rp.id)
                outcome.bytes_written += rp.bytes_new
                outcome.levels.append(rp.level)
                outcome.warnings += rp.warnings

    conduct_run(env, run, job, pool, worker, None, "backup", body)
    return points
