"""Restoring a recovery point through the plugin that made it.

A restore is recorded as a run of kind "restore" (state, log, byte counts), so the
run history shows restores next to backups.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import select

from ..catalog.models import Asset, Endpoint, Job, Pool, RecoveryPoint, Run, RunState, utcnow
from ..datapath.manifest import Manifest
from ..datapath.repository import Repository
from ..plugin_api.context import AssetInfo, EndpointInfo
from ..plugin_api.errors import RunCanceled, TapirError
from ..plugin_api.roles import RestoreRequest, RestoreResult
from . import runs
from .assets import jsonable
from .context import EngineContext
from .monitor import RunMonitor
from .pools import open_repository
from .progress import ProgressListener

log = logging.getLogger(__name__)

OVERWRITE_MODES = ("never", "older", "always")


def validate_restore_target(target: Path | None, in_place: bool, overwrite: str) -> None:
    """Exactly one of a target folder or in place, and a known overwrite mode."""
    if overwrite not in OVERWRITE_MODES:
        raise ValueError(
            f"unknown overwrite mode {overwrite!r} (choose from {', '.join(OVERWRITE_MODES)})"
        )
    if in_place and target is not None:
        raise ValueError("restore either to a target folder or in place, not both")
    if not in_place and target is None:
        raise ValueError("restore needs a target folder (or in place)")


def restore_point(
    env: EngineContext,
    rp_id: str,
    worker: str,
    paths: list[bytes] | None = None,
    *,
    target: Path | None = None,
    in_place: bool = False,
    overwrite: str = "never",
    listener: ProgressListener | None = None,
    options: dict[str, object] | None = None,
) -> tuple[int, RestoreResult]:
    """Restore (part of) recovery point ``rp_id``; returns the restore run's id and result.

    ``options`` are the plugin's restore options; they override the job's options of
    the same name in the request. Raises the plugin's error after recording the run
    as failed.
    """
    validate_restore_target(target, in_place, overwrite)
    with env.catalog.session() as s:
        rp = s.get(RecoveryPoint, rp_id)
        if rp is None:
            raise KeyError(f"no recovery point {rp_id}")
        asset = s.get(Asset, rp.asset_id)
        pool = s.get(Pool, rp.pool_id)
        job = s.get(Job, rp.job_id) if rp.job_id is not None else None
        endpoint = s.get(Endpoint, asset.endpoint_id) if asset and asset.endpoint_id else None
        assert asset is not None and pool is not None
        now = utcnow()
        run = Run(
            job_id=rp.job_id,
            kind="restore",
            level=rp.level,
            state=RunState.RUNNING,
            trigger="manual",
            params={
                "recovery_point": rp.id,
                "paths": [p.decode(errors="replace") for p in paths or []],
                "target": str(target) if target else None,
                "in_place": in_place,
                "overwrite": overwrite,
                "options": jsonable(dict(options or {})),
            },
            queued_at=now,
            started_at=now,
            heartbeat_at=now,
            worker=worker,
        )
        s.add(run)
        s.flush()
        run_id = run.id
    plugin = env.registry.source_plugin(rp.plugin)
    request = RestoreRequest(
        asset=AssetInfo(asset.kind, asset.name, asset.external_id, dict(asset.meta)),
        target=Path(target) if target is not None else None,
        paths=list(paths) if paths else None,
        in_place=in_place,
        overwrite=overwrite,
        options={**(dict(job.options) if job else {}), **(options or {})},
        endpoint=(
            EndpointInfo(endpoint.name, endpoint.plugin, endpoint.address, dict(endpoint.options))
            if endpoint
            else None
        ),
    )
    where = "in place" if in_place else f"to {target}"
    runs.log_line(env.catalog, run_id, f"restore of {rp.id} ({asset.name}) {where}")
    monitor = RunMonitor(env.catalog, run_id, worker, phase="restore", listener=listener)
    try:
        with monitor, open_repository(env, pool, monitor) as repo:
            manifest = repo.read_manifest(rp.id)
            missing = _missing_paths(repo, manifest, paths or [])
            if missing:
                # Refused before anything is written: a typo must not look like a restore.
                shown = ", ".join(p.decode("utf-8", "backslashreplace") for p in missing)
                raise TapirError(f"not in recovery point {rp.id}: {shown}")
            source = env.reader_factory(repo, manifest)
            ctx = env.plugin_context(
                rp.plugin,
                run_id=run_id,
                progress=monitor.progress,
                check_canceled=monitor.check_canceled,
            )
            result = plugin.restore(request, source, ctx)
    except BaseException as exc:
        state = RunState.CANCELED if isinstance(exc, RunCanceled) else RunState.FAILED
        runs.finish_run(env.catalog, run_id, state, str(exc) or type(exc).__name__)
        runs.log_line(env.catalog, run_id, f"restore {state}: {exc}", "ERROR")
        raise
    finally:
        env.release_run_loggers(run_id)
    state = RunState.WARNING if result.warnings else RunState.SUCCEEDED
    error = None
    for w in result.warnings:
        runs.log_line(env.catalog, run_id, w, "WARNING")
    for f in result.failed:
        runs.log_line(env.catalog, run_id, f"not restored: {f}", "ERROR")
    if result.failed:
        # Everything else was restored, but an operator must not read this as a success.
        state = RunState.FAILED
        shown = "; ".join(result.failed[:3]) + ("; ..." if len(result.failed) > 3 else "")
        error = f"{len(result.failed)} item(s) could not be restored: {shown}"
    if result.skipped:
        runs.log_line(
            env.catalog, run_id, f"{len(result.skipped)} items skipped (already present)", "INFO"
        )
    counters = monitor.counters(monitor.progress.flush())
    counters["bytes_done"] = max(counters["bytes_done"], result.bytes_restored)
    counters["items_done"] = max(counters["items_done"], result.items_restored)
    # The summary goes into the log before the run ends: a page that stops polling at
    # the end state must find it there.
    runs.log_line(
        env.catalog,
        run_id,
        f"restored {result.items_restored} items, {result.bytes_restored} bytes",
    )
    runs.finish_run(env.catalog, run_id, state, error, **counters)
    return run_id, result


def _missing_paths(repo: Repository, manifest: Manifest, paths: list[bytes]) -> list[bytes]:
    """The requested paths the point holds no item at or below (as the reader selects)."""
    wanted = {p.strip(b"/") for p in paths}
    wanted.discard(b"")  # the whole point
    for item in repo.iter_items(manifest):
        if not wanted:
            break
        path = item.path
        while path:  # the item and every folder above it
            wanted.discard(path)
            path = path.rpartition(b"/")[0]
    return sorted(wanted)


def latest_point_of_job(env: EngineContext, job_name: str) -> RecoveryPoint:
    """The newest recovery point of a job (``JOB:latest``)."""
    with env.catalog.session() as s:
        rp = s.scalar(
            select(RecoveryPoint)
            .join(Job, RecoveryPoint.job_id == Job.id)
            .where(Job.name == job_name)
            .order_by(RecoveryPoint.created_at.desc(), RecoveryPoint.id.desc())
            .limit(1)
        )
        if rp is None:
            if s.scalar(select(Job.id).where(Job.name == job_name)) is None:
                raise KeyError(f"no job named {job_name!r}")
            raise KeyError(f"job {job_name!r} has no recovery point yet")
        return rp
