"""Copy jobs: recovery points of one pool copied into another (disk to tape, or any pool).

A copy job (``Job.kind == "copy"``, ``Job.pool_id`` the target) selects points of
its source pool: of some jobs, no older than N days, or one per GFS period. A run
copies each selected point the target lacks, oldest first. Copying reads the point
through a RecoveryPointReader on the source and writes it through a
RecoveryPointWriter on the target, as a backup plugin would: files re-chunked
(holes kept), disks re-chunked at the same offsets, every item's metadata kept.
The copy is a complete point with the source's asset, kind and creation time; the
first copy of a chain is a full, later ones incrementals on the previous copy, so
the target deduplicates them against each other.

A copy is recognised by ``meta.copied_from`` (the source point's id), which is also
stored in the copy's manifest: a target rebuilt from its medium still knows what
it holds. Like a backup, a copy exists only once its manifest and then its row are
written; a failed, canceled or killed copy leaves nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import select

from ..catalog.models import Asset, Job, Pool, RecoveryPoint, Run, RunState, utcnow
from ..datapath.repository import Repository
from ..plugin_api.errors import ChunkCorrupt, RunCanceled, TapirError
from ..plugin_api.items import Extent, Item, ItemKind
from ..plugin_api.roles import BackupLevel
from . import runs
from .backup import RunOutcome, conduct_run, describe_error
from .context import EngineContext
from .monitor import RunMonitor
from .points import parse_time, point_row
from .pools import open_repository
from .progress import ProgressListener

log = logging.getLogger(__name__)

#: ``Job.kind`` and ``Run.kind`` of copy jobs and their runs.
COPY_KIND = "copy"
#: ``Job.plugin`` of a copy job (the points it copies keep their own plugin).
COPY_PLUGIN = "copy"
TIERS = ("daily", "weekly", "monthly", "yearly")

_BUCKETS: dict[str, Callable[[datetime], Hashable]] = {
    "daily": lambda t: t.date(),
    "weekly": lambda t: tuple(t.isocalendar()[:2]),
    "monthly": lambda t: (t.year, t.month),
    "yearly": lambda t: t.year,
}


@dataclass(frozen=True)
class CopySelection:
    """What a copy job copies: points of ``source_pool``, narrowed by the other fields."""

    source_pool: str
    jobs: tuple[str, ...] | None = None  # None: the points of every job
    max_age_days: int | None = None
    tier: str | None = None  # one point per day/week/month/year of each chain

    def __post_init__(self) -> None:
        if not isinstance(self.source_pool, str) or not self.source_pool:
            raise ValueError("a copy job needs its source pool")
        if self.jobs is not None and (
            not self.jobs or not all(isinstance(j, str) and j for j in self.jobs)
        ):
            raise ValueError("the source jobs of a copy job are a non-empty list of names")
        if self.max_age_days is not None and (
            not isinstance(self.max_age_days, int)
            or isinstance(self.max_age_days, bool)
            or self.max_age_days < 1
        ):
            raise ValueError(f"max_age_days must be a whole number >= 1, not {self.max_age_days!r}")
        if self.tier is not None and self.tier not in TIERS:
            raise ValueError(f"unknown tier {self.tier!r} (choose from {', '.join(TIERS)})")

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> CopySelection:
        """Read ``Job.selection`` of a copy job; ValueError for anything malformed."""
        unknown = sorted(set(doc) - {"source_pool", "jobs", "max_age_days", "tier"})
        if unknown:
            raise ValueError(f"unknown copy selection keys: {', '.join(unknown)}")
        jobs = doc.get("jobs")
        if jobs is not None and not isinstance(jobs, list | tuple):
            raise ValueError("the source jobs of a copy job are a list of names")
        return cls(
            source_pool=doc.get("source_pool", ""),
            jobs=tuple(jobs) if jobs is not None else None,
            max_age_days=doc.get("max_age_days"),
            tier=doc.get("tier"),
        )

    def as_dict(self) -> dict[str, Any]:
        """The ``Job.selection`` document (absent keys mean "no restriction")."""
        doc: dict[str, Any] = {"source_pool": self.source_pool}
        if self.jobs is not None:
            doc["jobs"] = list(self.jobs)
        if self.max_age_days is not None:
            doc["max_age_days"] = self.max_age_days
        if self.tier is not None:
            doc["tier"] = self.tier
        return doc


def is_copy(meta: dict[str, Any] | None) -> bool:
    """True for the catalog metadata of a point made by a copy job."""
    return bool(meta) and "copied_from" in meta  # type: ignore[operator]


def copy_chain_key(rp: RecoveryPoint) -> str | None:
    """What separates copy chains of one copy job and asset: the source job's name.

    Backups return None. Two source jobs protecting the same asset (two folders of
    one host) make two chains in the target, as they did in the source.
    """
    meta = rp.meta or {}
    if not is_copy(meta):
        return None
    return str(meta.get("source_job") or "")


@dataclass(frozen=True)
class _Candidate:
    id: str
    asset_id: int
    source_job: str
    created_at: datetime


def plan_copy(
    env: EngineContext,
    job: Job,
    *,
    now: datetime | None = None,
    tz: tzinfo = UTC,
) -> list[str]:
    """Ids of the source points the copy job would copy now, oldest first.

    A point the target holds a copy of (``meta.copied_from``) is never selected
    again. With a tier, each chain (source job and asset) gets the oldest
    selected point of every period (day, ISO week, month, year in ``tz``) for which
    the target holds no copy of that chain yet.
    """
    if job.kind != COPY_KIND:
        raise TapirError(f"job {job.name!r} is not a copy job")
    selection = CopySelection.from_dict(dict(job.selection or {}))
    now = now or utcnow()
    with env.catalog.session() as s:
        source = s.scalar(select(Pool).where(Pool.name == selection.source_pool))
        if source is None:
            raise TapirError(
                f"copy job {job.name}: the source pool {selection.source_pool!r} is gone"
            )
        if source.id == job.pool_id:
            raise TapirError(f"copy job {job.name}: source and target are the same pool")
        rows = s.execute(
            select(RecoveryPoint.id, RecoveryPoint.asset_id, RecoveryPoint.created_at, Job.name)
            .outerjoin(Job, RecoveryPoint.job_id == Job.id)
            .where(RecoveryPoint.pool_id == source.id)
        ).all()
        copies = s.execute(
            select(RecoveryPoint.asset_id, RecoveryPoint.meta).where(
                RecoveryPoint.pool_id == job.pool_id
            )
        ).all()
    copied: set[str] = set()
    covered: set[tuple[int, str, Hashable]] = set()
    bucket_of = _BUCKETS[selection.tier] if selection.tier else None
    for asset_id, meta in copies:
        if not is_copy(meta):
            continue
        copied.add(str(meta["copied_from"]))
        if bucket_of is not None and meta.get("source_created_at"):
            when = parse_time(str(meta["source_created_at"])).astimezone(tz)
            covered.add((asset_id, str(meta.get("source_job") or ""), bucket_of(when)))
    oldest = now - timedelta(days=selection.max_age_days) if selection.max_age_days else None
    wanted_jobs = set(selection.jobs) if selection.jobs is not None else None
    candidates = [
        _Candidate(rp_id, asset_id, job_name or "", created_at)
        for rp_id, asset_id, created_at, job_name in rows
        if rp_id not in copied
        and (wanted_jobs is None or job_name in wanted_jobs)
        and (oldest is None or created_at >= oldest)
    ]
    candidates.sort(key=lambda c: (c.created_at, c.id))
    if bucket_of is None:
        return [c.id for c in candidates]
    chosen: list[str] = []
    for c in candidates:
        key = (c.asset_id, c.source_job, bucket_of(c.created_at.astimezone(tz)))
        if key not in covered:
            covered.add(key)
            chosen.append(c.id)
    return chosen


def execute_copy(
    env: EngineContext,
    run_id: int,
    worker: str,
    listener: ProgressListener | None = None,
    *,
    tz: tzinfo = UTC,
) -> None:
    """Execute a claimed copy run to its end; never raises for a failed copy."""
    with env.catalog.session() as s:
        run = s.get(Run, run_id)
        if run is None:
            raise KeyError(f"no run {run_id}")
        job = s.get(Job, run.job_id) if run.job_id is not None else None
        pool = s.get(Pool, job.pool_id) if job is not None else None
    if run.state != RunState.RUNNING or run.worker != worker:
        raise ValueError(f"run {run_id} is {run.state}, not running for {worker}")

    def body(monitor: RunMonitor, outcome: RunOutcome) -> None:
        assert job is not None and pool is not None
        if job.kind != COPY_KIND:
            raise TapirError(f"job {job.name} is a {job.kind} job, not a copy job")
        _copy_job(env, run, job, pool, monitor, outcome, tz)

    conduct_run(env, run, job, pool, worker, listener, "copy", body)


def _copy_job(
    env: EngineContext,
    run: Run,
    job: Job,
    target: Pool,
    monitor: RunMonitor,
    outcome: RunOutcome,
    tz: tzinfo,
) -> None:
    selection = CopySelection.from_dict(dict(job.selection or {}))
    todo = plan_copy(env, job, tz=tz)
    with env.catalog.session() as s:
        source = s.scalar(select(Pool).where(Pool.name == selection.source_pool))
        points = (
            {rp.id: rp for rp in s.scalars(select(RecoveryPoint).where(RecoveryPoint.id.in_(todo)))}
            if todo
            else {}
        )
        total = sum(p.bytes_logical for p in points.values())
    assert source is not None  # plan_copy refused a missing source pool
    runs.log_line(
        env.catalog,
        run.id,
        f"copy of pool {source.name} to pool {target.name}: {len(todo)} recovery point(s) "
        f"to copy ({total} bytes)",
    )
    if not todo:
        return
    monitor.progress.set_total(bytes_total=total)
    with (
        open_repository(env, source, monitor) as src_repo,
        open_repository(env, target, monitor) as dst_repo,
        # Keeps gc of the source from deleting chunks of a point being read.
        src_repo.store.guard(exclusive=False),
    ):
        for rp_id in todo:
            monitor.check_canceled()
            src = points.get(rp_id)
            if src is None:
                runs.log_line(env.catalog, run.id, f"{rp_id}: pruned meanwhile, skipped")
                continue
            try:
                copied = copy_point(env, run, job, source, target, src_repo, dst_repo, src, monitor)
            except RunCanceled:
                raise
            except FileNotFoundError as exc:
                if _exists(env, rp_id):
                    outcome.errors.append(f"{rp_id}: {describe_error(exc)}")
                    runs.log_line(env.catalog, run.id, f"copy of {rp_id}: {exc}", "ERROR")
                else:
                    runs.log_line(env.catalog, run.id, f"{rp_id}: pruned meanwhile, skipped")
                continue
            except Exception as exc:
                log.exception("run %s: copy of %s failed", run.id, rp_id)
                message = f"{rp_id}: {describe_error(exc)}"
                outcome.errors.append(message)
                runs.log_line(env.catalog, run.id, f"copy of {message}", "ERROR")
                continue
            if copied is None:
                continue
            outcome.recovery_points.append(copied.id)
            outcome.bytes_written += copied.bytes_new
            outcome.levels.append(copied.level)


def _exists(env: EngineContext, rp_id: str) -> bool:
    with env.catalog.session() as s:
        return s.get(RecoveryPoint, rp_id) is not None


def _copy_of(s: Any, pool_id: int, asset_id: int, source_id: str) -> str | None:
    """The id of a copy of ``source_id`` in pool ``pool_id``, if there is one."""
    rows = s.execute(
        select(RecoveryPoint.id, RecoveryPoint.meta).where(
            RecoveryPoint.pool_id == pool_id, RecoveryPoint.asset_id == asset_id
        )
    )
    for rp_id, meta in rows:
        if is_copy(meta) and meta["copied_from"] == source_id:
            return rp_id
    return None


def _previous_copy(env: EngineContext, job: Job, asset_id: int, source_job: str) -> str | None:
    """The newest copy of the same chain in the target (the parent of the next copy)."""
    with env.catalog.session() as s:
        rows = s.execute(
            select(RecoveryPoint.id, RecoveryPoint.meta)
            .where(
                RecoveryPoint.job_id == job.id,
                RecoveryPoint.asset_id == asset_id,
                RecoveryPoint.pool_id == job.pool_id,
            )
            .order_by(RecoveryPoint.created_at.desc(), RecoveryPoint.id.desc())
        ).all()
    for rp_id, meta in rows:
        if is_copy(meta) and str(meta.get("source_job") or "") == source_job:
            return rp_id
    return None


def copy_point(
    env: EngineContext,
    run: Run,
    job: Job,
    source: Pool,
    target: Pool,
    src_repo: Repository,
    dst_repo: Repository,
    src: RecoveryPoint,
    monitor: RunMonitor,
) -> RecoveryPoint | None:
    """Copy one recovery point into ``dst_repo``; returns the committed copy's row.

    None when another run stored a copy of the same point meanwhile: this copy is
    dropped again, so the target never lists two copies of one point.
    """
    manifest = src_repo.read_manifest(src.id)
    with env.catalog.session() as s:
        source_job = s.scalar(select(Job.name).where(Job.id == src.job_id)) if src.job_id else None
        asset_name = s.scalar(select(Asset.name).where(Asset.id == src.asset_id))
    source_job = source_job or manifest.job or ""
    parent_id = _previous_copy(env, job, src.asset_id, source_job)
    parent = None
    if parent_id is not None and not dst_repo.store.can_reference(parent_id):
        runs.log_line(
            env.catalog,
            run.id,
            f"{src.id}: the target cannot reference previous copy {parent_id}; copying in full",
        )
        parent_id = None
    if parent_id is not None:
        try:
            parent = dst_repo.read_manifest(parent_id)
        except (FileNotFoundError, TapirError, ValueError) as exc:
            runs.log_line(
                env.catalog, run.id, f"{src.id}: previous copy {parent_id} unreadable ({exc})"
            )
    if manifest.level == BackupLevel.LOG:
        level = BackupLevel.LOG
    else:
        level = BackupLevel.INCREMENTAL if parent is not None else BackupLevel.FULL
    runs.log_line(
        env.catalog,
        run.id,
        f"{asset_name}: copying {src.id} ({manifest.kind}, {manifest.bytes_logical} bytes, "
        f"made {src.created_at:%Y-%m-%d %H:%M:%S} UTC) as a {level}",
    )
    writer = env.writer_factory(
        dst_repo,
        asset=dict(manifest.asset),
        kind=manifest.kind,
        level=level,
        job=job.name,
        parent=parent,
        progress=monitor.progress,
        check_canceled=monitor.check_canceled,
    )
    # The copy keeps the time its data was captured (as the catalog knows it, which is
    # also what selected it): retention and restores by date treat it as its source.
    made = src.created_at.astimezone(UTC).isoformat()
    writer.created_at = made
    reader = env.reader_factory(src_repo, manifest)
    inherited = list(manifest.warnings)
    metadata = {
        **manifest.metadata,
        "copied_from": src.id,
        "source_created_at": made,
        "source_pool": source.name,
        "source_job": source_job,
        "copied_at": utcnow().isoformat(),
    }
    with monitor.writing(writer):
        for item in reader.items():
            monitor.check_canceled()
            _copy_item(reader, writer, item)
        monitor.check_canceled()
        copied = writer.finish(metadata, inherited)
    try:
        with env.catalog.session() as s:
            other = _copy_of(s, target.id, src.asset_id, src.id)
            rp = point_row(
                copied,
                asset_id=src.asset_id,
                job_id=job.id,
                pool_id=target.id,
                run_id=run.id,
                plugin=src.plugin,
            )
            if other is None:
                s.add(rp)
    except Exception:
        # No row, so no copy: remove the manifest too, and let gc reclaim its chunks.
        _drop_manifest(dst_repo, copied.id, run.id)
        raise
    if other is not None:
        _drop_manifest(dst_repo, copied.id, run.id)
        runs.log_line(env.catalog, run.id, f"{src.id}: copied meanwhile as {other}, skipped")
        return None
    for w in copied.warnings[len(inherited) :]:
        runs.log_line(env.catalog, run.id, f"{asset_name}: {w}", "WARNING")
    runs.log_line(
        env.catalog,
        run.id,
        f"{asset_name}: {src.id} copied as {rp.id} ({rp.level}, {rp.items} items, "
        f"{rp.bytes_logical} bytes, {rp.bytes_new} new)",
    )
    return rp


def _drop_manifest(repo: Repository, rp_id: str, run_id: int) -> None:
    try:
        repo.delete_manifest(rp_id)
    except Exception as exc:
        log.error("run %s: orphan manifest %s left on the medium: %s", run_id, rp_id, exc)


def _copy_item(reader: Any, writer: Any, item: Item) -> None:
    """Write one item of the source point into the copy, keeping its metadata."""
    if item.kind == ItemKind.FILE:
        out = writer.open_file(item)
        for ref in item.chunks:
            if ref.id is None:
                out.hole(ref.length)
                continue
            data = reader.read_chunk(ref.id)
            if len(data) != ref.length:
                raise ChunkCorrupt(
                    ref.id, f"holds {len(data)} bytes where {item.path!r} expects {ref.length}"
                )
            out.write(data)
        out.close()
    elif item.kind == ItemKind.DISK:
        image = reader.open_disk(item)
        # Only the stored chunks are read; the holes of the source stay holes.
        extents = [Extent(off, ref.length) for off, ref in item.chunk_offsets() if ref.id]
        writer.add_disk(item, image.pread, extents)
    else:
        writer.add(item)
