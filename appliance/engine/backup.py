"""Executing one backup run: assets, level, events, the plugin, and the commit order.

A recovery point exists only once whole: the writer's manifest is written on the
medium first (``finish``), and only then is the catalog row inserted. Any error or
a cancel aborts the writer; the run ends failed or canceled without a point, and
the chunks it wrote are reclaimed by the next ``gc``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from ..catalog.models import (
    Endpoint,
    Job,
    Pool,
    RecoveryPoint,
    Run,
    RunState,
    utcnow,
)
from ..datapath.repository import Repository
from ..plugin_api.context import AssetInfo, EndpointInfo, PluginContext
from ..plugin_api.errors import RunCanceled, TapirError
from ..plugin_api.roles import (
    BackupLevel,
    BackupRequest,
    HypervisorPlugin,
    SourcePlugin,
)
from . import run_end, runs
from .assets import jsonable, upsert_asset
from .context import EngineContext
from .monitor import RunMonitor
from .points import point_row
from .pools import open_repository
from .progress import ProgressListener
from .rule_assets import select_by_rules
from .selection import RuleSet

if TYPE_CHECKING:
    from .snapshot_freeze import AssetFreeze

log = logging.getLogger(__name__)

LEVELS = ("auto", "full", "incremental", "log")


def choose_level(
    requested: str,
    *,
    has_parent: bool,
    incrementals_since_full: int,
    full_every: int | None,
    capabilities: set[str],
) -> tuple[str, str]:
    """The level a backup runs at, and why.

    ``auto`` and ``incremental`` fall back to a full when there is no parent, when
    the plugin cannot do incrementals, or (``auto`` only) after ``full_every``
    incrementals in a row.
    """
    if requested not in LEVELS:
        raise ValueError(f"unknown backup level {requested!r} (choose from {', '.join(LEVELS)})")
    if requested == "full":
        return BackupLevel.FULL, "full requested"
    if requested == "log":
        if "log" not in capabilities:
            raise TapirError("this plugin does not offer log backups")
        if not has_parent:
            raise TapirError("a log backup needs a previous full or incremental backup")
        return BackupLevel.LOG, "log requested"
    if "incremental" not in capabilities:
        return BackupLevel.FULL, "the plugin makes full backups only"
    if not has_parent:
        return BackupLevel.FULL, "no previous recovery point of this job and asset in this pool"
    if requested == "auto" and full_every and incrementals_since_full >= full_every:
        return BackupLevel.FULL, f"{incrementals_since_full} incrementals since the last full"
    return BackupLevel.INCREMENTAL, "incremental on the previous recovery point"


def recovery_point_kind(plugin: SourcePlugin, asset: AssetInfo) -> str:
    """files, image or application: what the manifest says the point holds."""
    declared = asset.metadata.get("recovery_point_kind")
    if isinstance(declared, str) and declared:
        return declared
    if isinstance(plugin, HypervisorPlugin):
        return "image"
    if asset.kind in ("files", "host", "filesystem", "directory"):
        return "files"
    return "application"


@dataclass
class RunOutcome:
    """What a backup run produced, for its row and the run-finished event."""

    state: str = RunState.SUCCEEDED
    errors: list[str] = field(default_factory=list)
    warnings: int = 0
    recovery_points: list[str] = field(default_factory=list)
    bytes_written: int = 0
    levels: list[str] = field(default_factory=list)  # the level each asset was backed up at


def run_info(run: Run, job: Job | None, pool: Pool | None) -> dict[str, Any]:
    """The ``run`` dict event hooks receive."""
    return {
        "id": run.id,
        "kind": run.kind,
        "job": job.name if job else None,
        "plugin": job.plugin if job else None,
        "level": run.level,
        "pool": pool.name if pool else None,
        "trigger": run.trigger,
        "attempt": run.attempt,
    }


def execute_backup(
    env: EngineContext, run_id: int, worker: str, listener: ProgressListener | None = None
) -> None:
    """Execute a claimed backup run to its end; never raises for a failed backup."""
    with env.catalog.session() as s:
        run = s.get(Run, run_id)
        if run is None:
            raise KeyError(f"no run {run_id}")
        job = s.get(Job, run.job_id) if run.job_id is not None else None
        pool = s.get(Pool, job.pool_id) if job is not None else None
        endpoint = s.get(Endpoint, job.endpoint_id) if job and job.endpoint_id else None
    if run.state != RunState.RUNNING or run.worker != worker:
        raise ValueError(f"run {run_id} is {run.state}, not running for {worker}")

    def body(monitor: RunMonitor, outcome: RunOutcome) -> None:
        assert job is not None and pool is not None
        runs.log_line(
            env.catalog,
            run_id,
            f"backup of job {job.name} ({job.plugin}) to pool {pool.name} on {worker}",
        )
        _backup_job(env, run, job, pool, endpoint, monitor, outcome)

    conduct_run(env, run, job, pool, worker, listener, "backup", body)


def conduct_run(
    env: EngineContext,
    run: Run,
    job: Job | None,
    pool: Pool | None,
    worker: str,
    listener: ProgressListener | None,
    phase: str,
    body: Callable[[RunMonitor, RunOutcome], None],
) -> None:
    """Run ``body`` under a monitor (heartbeat, progress, cancel), then record the end.

    Shared by backup and copy runs: the started/finished events, the run's log,
    cancellation and failure handling are the same for both.
    """
    info = run_info(run, job, pool)
    outcome = RunOutcome()
    monitor = RunMonitor(env.catalog, run.id, worker, phase=phase, listener=listener)
    try:
        with monitor:
            env.registry.call_event("tapir_run_started", run=info)
            if job is None or pool is None:
                raise TapirError("the run's job no longer exists")
            body(monitor, outcome)
    except RunCanceled as exc:
        outcome.state = RunState.CANCELED
        outcome.errors.append(str(exc))
    except Exception as exc:
        log.exception("%s run %s failed", phase, run.id)
        outcome.state = RunState.FAILED
        outcome.errors.append(describe_error(exc))
    finally:
        env.release_run_loggers(run.id)
    finish_outcome(env, run, job, info, monitor, outcome)


def finish_outcome(
    env: EngineContext,
    run: Run,
    job: Job | None,
    info: dict[str, Any],
    monitor: RunMonitor,
    outcome: RunOutcome,
) -> None:
    """Record how a backup or copy run ended, tell the plugins, then queue a retry and
    notify (:mod:`.run_end`)."""
    run_id = run.id
    if outcome.state == RunState.SUCCEEDED and outcome.errors:
        outcome.state = RunState.FAILED
    if outcome.state == RunState.SUCCEEDED and outcome.warnings:
        outcome.state = RunState.WARNING
    if monitor.lost and outcome.state != RunState.SUCCEEDED:
        outcome.errors.append("the run was taken away from this worker")
    error = "; ".join(outcome.errors) or None
    counters = monitor.counters(monitor.progress.flush())
    counters["bytes_written"] = outcome.bytes_written
    if outcome.levels:
        # "auto" becomes what was done, so the history says full or incremental.
        counters["level"] = outcome.levels[0] if len(set(outcome.levels)) == 1 else "mixed"
    recorded = runs.finish_run(env.catalog, run_id, outcome.state, error, **counters)
    if not recorded:
        runs.log_line(
            env.catalog,
            run_id,
            f"run ended {outcome.state} but was no longer running (crash recovery?); "
            f"recovery points kept: {', '.join(outcome.recovery_points) or 'none'}",
            "WARNING",
        )
    runs.log_line(
        env.catalog,
        run_id,
        f"run {outcome.state}" + (f": {error}" if error else ""),
        "INFO" if outcome.state in (RunState.SUCCEEDED, RunState.WARNING) else "ERROR",
    )
    env.registry.call_event(
        "tapir_run_finished",
        run={
            **info,
            "state": outcome.state,
            "error": error,
            "bytes_done": counters["bytes_done"],
            "bytes_written": outcome.bytes_written,
            "recovery_points": list(outcome.recovery_points),
        },
    )
    if recorded:
        # Once, by whoever recorded the end (crash recovery does it for runs it took).
        run_end.run_finished(env, run_id)


def describe_error(exc: BaseException) -> str:
    """An exception as one line for the run's error (no class name for operator errors)."""
    if isinstance(exc, TapirError | KeyError | ValueError | OSError):
        text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        return str(text)
    return f"{type(exc).__name__}: {exc}"


def _backup_job(
    env: EngineContext,
    run: Run,
    job: Job,
    pool: Pool,
    endpoint: Endpoint | None,
    monitor: RunMonitor,
    outcome: RunOutcome,
) -> None:
    plugin = env.registry.source_plugin(job.plugin)
    ctx = env.plugin_context(
        job.plugin,
        run_id=run.id,
        progress=monitor.progress,
        check_canceled=monitor.check_canceled,
    )
    endpoint_info = (
        EndpointInfo(endpoint.name, endpoint.plugin, endpoint.address, dict(endpoint.options))
        if endpoint
        else None
    )
    rules = RuleSet.from_selection(job.selection)
    if rules is not None:
        assets = _select_by_rules(env, run, job, rules, endpoint, plugin, ctx, outcome)
        if not assets:
            return
    else:
        assets = resolve_assets(env, plugin, job, endpoint, endpoint_info, ctx)
        if not assets:
            raise TapirError(f"job {job.name}: no asset to back up (discovery found nothing)")
    from . import snapshot_freeze  # it builds on this module and group_run

    freezer = snapshot_freeze.prepare(env, job, run.id)
    with open_repository(env, pool, monitor) as repo:
        for asset_id, asset in assets:
            monitor.check_canceled()
            try:
                rp = backup_asset(
                    env,
                    run,
                    job,
                    pool,
                    repo,
                    plugin,
                    asset_id,
                    asset,
                    endpoint_info,
                    ctx,
                    monitor,
                    freeze=freezer.for_asset() if freezer is not None else None,
                )
            except RunCanceled:
                raise
            except Exception as exc:
                log.exception("run %s: backup of %s failed", run.id, asset.name)
                message = f"{asset.name}: {describe_error(exc)}"
                outcome.errors.append(message)
                runs.log_line(env.catalog, run.id, f"backup of {message}", "ERROR")
                continue
            outcome.recovery_points.append(rp.id)
            outcome.bytes_written += rp.bytes_new
            outcome.levels.append(rp.level)
            outcome.warnings += rp.warnings


def _select_by_rules(
    env: EngineContext,
    run: Run,
    job: Job,
    rules: RuleSet,
    endpoint: Endpoint | None,
    plugin: SourcePlugin,
    ctx: PluginContext,
    outcome: RunOutcome,
) -> list[tuple[int, AssetInfo]]:
    """The assets the job's rules select now, each logged with the rule that decided."""

    def say(message: str, level: str = "INFO") -> None:
        runs.log_line(env.catalog, run.id, message, level)

    sel = select_by_rules(env, job, rules, endpoint, plugin, ctx, discover=rules.discover)
    if sel.discovery is not None:
        d = sel.discovery
        say(
            f"discovery of endpoint {d.endpoint}: {d.found} found, {len(d.added)} new, "
            f"{len(d.gone)} gone"
        )
    if sel.discovery_error is not None:
        outcome.warnings += 1
        say(
            f"discovery of endpoint {endpoint.name if endpoint else '?'} failed "
            f"({sel.discovery_error}); selecting from the catalog as last discovered",
            "WARNING",
        )
    for d in sel.decisions:
        if d.selected:
            say(f"{d.asset.name}: selected by rule {d.rule}")
        elif d.excluded_by is not None:
            say(f"{d.asset.name}: excluded by rule {d.excluded_by} (matched {d.rule})")
    for rule in sel.unmatched:
        outcome.warnings += 1
        say(f"rule {rule} matched no present asset (deleted, renamed or gone?)", "WARNING")
    if not sel.selected:
        outcome.warnings += 1
        say(f"the rules of job {job.name} selected no asset; nothing backed up", "WARNING")
    return [(sel.asset_ids[d.asset.external_id], d.asset) for d in sel.selected]


def resolve_assets(
    env: EngineContext,
    plugin: SourcePlugin,
    job: Job,
    endpoint: Endpoint | None,
    endpoint_info: EndpointInfo | None,
    ctx: PluginContext,
) -> list[tuple[int, AssetInfo]]:
    """Discover the job's assets, record them in the catalog, apply the job's selection.

    ``job.selection["assets"]`` lists names or external ids; without it every
    discovered asset is backed up. A selected asset that discovery did not find is
    an error (a renamed or deleted VM must not go unnoticed).
    """
    discovered = plugin.job_assets(endpoint_info, dict(job.options or {}), ctx)
    wanted = job.selection.get("assets") if job.selection else None
    if wanted:
        by_key: dict[str, AssetInfo] = {}
        for a in discovered:
            by_key.setdefault(a.external_id, a)
            by_key.setdefault(a.name, a)
        missing = [w for w in wanted if w not in by_key]
        if missing:
            raise TapirError(f"selected assets not found by discovery: {', '.join(missing)}")
        chosen = list({by_key[w].external_id: by_key[w] for w in wanted}.values())
    else:
        chosen = list(discovered)
    out: list[tuple[int, AssetInfo]] = []
    now = utcnow()
    with env.catalog.session() as s:
        for a in discovered:
            row = upsert_asset(
                s,
                plugin.name,
                a.kind,
                a.name,
                a.external_id,
                now=now,
                meta=dict(a.metadata),
                endpoint_id=endpoint.id if endpoint else None,
            ).row
            if any(c.external_id == a.external_id for c in chosen):
                out.append((row.id, a))
    return out


def _chain(env: EngineContext, job_id: int, asset_id: int, pool_id: int) -> list[RecoveryPoint]:
    with env.catalog.session() as s:
        return list(
            s.scalars(
                select(RecoveryPoint)
                .where(
                    RecoveryPoint.job_id == job_id,
                    RecoveryPoint.asset_id == asset_id,
                    RecoveryPoint.pool_id == pool_id,
                )
                .order_by(RecoveryPoint.created_at.desc(), RecoveryPoint.id.desc())
            )
        )


def backup_asset(
    env: EngineContext,
    run: Run,
    job: Job,
    pool: Pool,
    repo: Repository,
    plugin: SourcePlugin,
    asset_id: int,
    asset: AssetInfo,
    endpoint_info: EndpointInfo | None,
    ctx: PluginContext,
    monitor: RunMonitor,
    *,
    freeze: AssetFreeze | None = None,
) -> RecoveryPoint:
    """Back up one asset into ``repo``; returns the committed recovery point row.

    ``freeze`` (hypervisor jobs with ``freeze_with``) becomes ``ctx.snapshot_window``.
    """
    chain = _chain(env, job.id, asset_id, pool.id)
    since_full = 0
    for rp in chain:
        if rp.level == BackupLevel.FULL:
            break
        since_full += 1
    level, why = choose_level(
        run.level,
        has_parent=bool(chain),
        incrementals_since_full=since_full,
        full_every=job.full_every,
        capabilities=set(plugin.capabilities()),
    )
    parent_manifest = None
    if level != BackupLevel.FULL:
        try:
            parent_manifest = repo.read_manifest(chain[0].id)
        except (FileNotFoundError, TapirError, ValueError) as exc:
            if level == BackupLevel.LOG:
                raise TapirError(
                    f"cannot read parent {chain[0].id} for a log backup: {exc}"
                ) from exc
            level, why = BackupLevel.FULL, f"parent {chain[0].id} unreadable ({exc})"
        if parent_manifest is not None and not repo.store.can_reference(chain[0].id):
            # e.g. a tape pool that starts a new media set: every set restores alone.
            if level == BackupLevel.LOG:
                raise TapirError(
                    f"a log backup needs its parent {chain[0].id} on the medium it writes to"
                )
            level, why = BackupLevel.FULL, f"the pool cannot reference parent {chain[0].id}"
            parent_manifest = None
    runs.log_line(env.catalog, run.id, f"{asset.name}: {level} backup ({why})")
    kind = recovery_point_kind(plugin, asset)
    asset_doc = {
        "plugin": plugin.name,
        "kind": asset.kind,
        "name": asset.name,
        "external_id": asset.external_id,
    }
    writer = env.writer_factory(
        repo,
        asset=asset_doc,
        kind=kind,
        level=level,
        job=job.name,
        parent=parent_manifest,
        progress=monitor.progress,
        check_canceled=monitor.check_canceled,
    )
    info = run_info(run, job, pool)
    request = BackupRequest(
        asset=asset, level=level, options=dict(job.options), endpoint=endpoint_info
    )
    with monitor.writing(writer):
        result = _call_plugin(env, plugin, asset, info, request, writer, ctx, freeze)
        monitor.check_canceled()
        manifest = writer.finish(jsonable(dict(result.metadata)), list(result.warnings))
    # The manifest is durable on the medium: now the point may enter the catalog.
    try:
        with env.catalog.session() as s:
            rp = point_row(
                manifest,
                asset_id=asset_id,
                job_id=job.id,
                pool_id=pool.id,
                run_id=run.id,
                plugin=plugin.name,
            )
            s.add(rp)
    except Exception:
        # No row, so no point: remove the manifest too, and let gc reclaim its chunks.
        try:
            repo.delete_manifest(manifest.id)
        except Exception as exc:
            log.error("run %s: orphan manifest %s left on the medium: %s", run.id, manifest.id, exc)
        raise
    for w in manifest.warnings:
        runs.log_line(env.catalog, run.id, f"{asset.name}: {w}", "WARNING")
    runs.log_line(
        env.catalog,
        run.id,
        f"{asset.name}: recovery point {rp.id} ({rp.level}, {rp.items} items, "
        f"{rp.bytes_logical} bytes, {rp.bytes_new} new)",
    )
    return rp


def _call_plugin(
    env: EngineContext,
    plugin: SourcePlugin,
    asset: AssetInfo,
    info: dict[str, Any],
    request: BackupRequest,
    writer: Any,
    ctx: PluginContext,
    freeze: AssetFreeze | None = None,
) -> Any:
    if freeze is not None:
        ctx = dataclasses.replace(ctx, snapshot_window=freeze.window)
    env.registry.call_event("tapir_before_snapshot", asset=asset, run=info)
    ok = False
    try:
        # No freeze around an application's own backup: its backup tool makes its own
        # consistent copy (pg_basebackup, mariadb-backup), and holding a freeze for a
        # whole transfer would stop the application. freeze/thaw serve snapshots taken
        # by others: a hypervisor's snapshot of the guest, a consistency group.
        result = plugin.backup(request, writer, ctx)
        ok = True
    finally:
        env.registry.call_event("tapir_after_snapshot", asset=asset, run=info, ok=ok)
    if freeze is not None:
        freeze.annotate(result)
    return result
