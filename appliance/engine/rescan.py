"""Self-describing pools: attach an existing medium and rebuild the catalog from it.

Every recovery point's manifest names its asset, job, level, parent and counts, so
the catalog rows of a pool can be rebuilt from the medium alone (disaster recovery
on a new appliance, or a pool moved between appliances).

Attaching registers a medium that already holds a Tapir repository; it adds
nothing to the medium (opening it may still finish what a crash interrupted).
Rescanning reads every manifest and inserts the recovery points the catalog
lacks; it never deletes a manifest and deletes catalog rows only when asked to
(``prune_missing``), for points whose manifest is gone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..catalog.models import Job, Pool, RecoveryPoint, Run, RunState
from ..datapath.keys import PoolKeys
from ..datapath.manifest import Manifest

# The repository module keeps its config reader private; attaching needs the raw
# config (encryption, compression) even when this appliance cannot unwrap the keys.
from ..datapath.repository import Repository, read_config
from ..plugin_api.errors import TapirError
from ..plugin_api.roles import BackupLevel, MediaPlugin, MediaStore
from . import runs as runs_mod
from .assets import upsert_asset
from .context import EngineContext
from .points import parse_time, point_row
from .pools import MEDIUM_ID, pool_info, validate_name

log = logging.getLogger(__name__)

_LEVELS = (BackupLevel.FULL, BackupLevel.INCREMENTAL, BackupLevel.LOG)
_IN_BATCH = 500  # ids per IN (...) list: well under every database's parameter limit


@dataclass
class RescanProblem:
    """A recovery point rescan could not take into the catalog, and why."""

    recovery_point: str
    message: str


@dataclass
class MediumStatus:
    """What an attached pool's medium holds, read without the catalog."""

    pool: str
    encrypted: bool
    #: False when the pool's keys were wrapped by another appliance's master key.
    keys_usable: bool
    manifests: int

    @property
    def message(self) -> str | None:
        """What the operator must do before the pool can be read, if anything."""
        if self.keys_usable:
            return None
        return key_import_hint(self.pool)


@dataclass
class RescanReport:
    """The outcome of :func:`rescan_pool`. Ids are recovery point ids."""

    pool: str
    manifests: int = 0  # manifests listed on the medium
    added: list[str] = field(default_factory=list)  # points inserted into the catalog
    already: int = 0  # manifests whose point the catalog already had
    relinked: list[str] = field(default_factory=list)  # existing points now linked to a job
    assets_created: list[str] = field(default_factory=list)  # "plugin external_id"
    #: job name -> why points naming it were left without a job
    unlinked_jobs: dict[str, str] = field(default_factory=dict)
    unreadable: list[RescanProblem] = field(default_factory=list)
    #: points whose id the catalog already holds on another pool (never moved)
    conflicts: list[RescanProblem] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the catalog, gone from the medium
    pruned: list[str] = field(default_factory=list)  # missing rows deleted (prune_missing)
    held: list[str] = field(default_factory=list)  # missing rows kept: under legal hold

    @property
    def ok(self) -> bool:
        """True when every manifest was taken in and no catalog row lacks its manifest."""
        unresolved = set(self.missing) - set(self.pruned)
        return not (self.unreadable or self.conflicts or unresolved)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the CLI's ``--json`` shape)."""
        doc = asdict(self)
        doc["ok"] = self.ok
        return doc


def key_import_hint(pool_name: str) -> str:
    """The sentence that tells an operator how to unlock a pool from another appliance."""
    return (
        f"pool {pool_name!r} is encrypted and its keys were wrapped by another appliance's "
        f"master key: import the key exported from that appliance with "
        f"'tapir pool key import {pool_name} FILE', then run 'tapir pool rescan {pool_name}'"
    )


def attach_pool(
    env: EngineContext,
    name: str,
    media: str = "disk",
    *,
    path: Path | None,
    options: dict[str, Any] | None = None,
) -> Pool:
    """Register a medium that already holds a Tapir repository as the pool ``name``.

    Encryption and compression are read from the medium. An encrypted pool whose
    keys this appliance's master key cannot unwrap is registered all the same
    (see :func:`medium_status`); its key must then be imported. Refuses a medium
    that is not initialised, not a Tapir pool, or already registered here.
    Nothing is added to the medium; a refusal leaves no catalog row.
    """
    validate_name("pool", name)
    plugin = env.registry.media_plugin(media)
    opts: dict[str, Any] = dict(options or {})
    if path is not None:
        opts["path"] = str(Path(path).expanduser().resolve())
    for spec in plugin.pool_options():
        if spec.required and spec.name not in opts:
            raise ValueError(f"media {media!r} needs the pool option {spec.name!r}")
    master_key = env.master_key()
    with env.catalog.session() as s:
        if s.scalar(select(Pool.id).where(Pool.name == name)) is not None:
            raise ValueError(f"a pool named {name!r} already exists")
        # Options do not identify a medium (two tape pools share a changer and its
        # drives); the medium's own id, read below, does.
        others = list(s.scalars(select(Pool).where(Pool.media == media)))
        pool = Pool(name=name, media=media, options=opts, encrypted=False)
        s.add(pool)
        s.flush()
        # Opened inside the transaction: any refusal below rolls the row back.
        try:
            with _medium(env, plugin, pool) as store:
                config = read_config(store)
                if _unwrappable(config, master_key):
                    # Opening checks everything else the config holds (chunker sizes...).
                    Repository.open(store, master_key=master_key)
        except TapirError as exc:
            raise TapirError(f"cannot attach pool {name!r}: {exc}") from exc
        pool.encrypted = bool(config["encrypted"])
        pool.compression = str(config["compression"])
        medium_id = str(config.get("pool_id", ""))
        for other in others:
            if medium_id and (other.options or {}).get(MEDIUM_ID) == medium_id:
                # The same pool again, or reached by another path (a bind mount, a symlink).
                raise ValueError(f"this medium is already attached as pool {other.name!r}")
        pool.options = {**pool.options, MEDIUM_ID: medium_id}
        return pool


def medium_status(env: EngineContext, pool: Pool) -> MediumStatus:
    """Whether the pool is encrypted, whether its keys unwrap here, how many points it holds."""
    plugin = env.registry.media_plugin(pool.media)
    with _medium(env, plugin, pool) as store:
        config = read_config(store)
        return MediumStatus(
            pool=pool.name,
            encrypted=bool(config["encrypted"]),
            keys_usable=_unwrappable(config, env.master_key()),
            manifests=len(store.manifests()),
        )


def rescan_pool(env: EngineContext, pool: Pool, *, prune_missing: bool = False) -> RescanReport:
    """Insert every recovery point found on the pool's medium that the catalog lacks.

    Assets are found (or created) by plugin and external id, jobs linked by name
    when a job of that name and plugin exists, parents kept as the manifests name
    them. A point the catalog already has is never duplicated; an existing point
    without a job is linked when its job now exists. An unreadable manifest is
    reported and the scan goes on. Catalog points of this pool whose manifest is
    gone are reported; with ``prune_missing`` their rows are deleted (except
    points under legal hold). Refused while a backup runs on the pool.
    """
    _refuse_while_running(env, pool)
    report = RescanReport(pool=pool.name)
    # The catalog is read before the medium: a backup writes its manifest before its
    # row, so a row seen here whose manifest is absent below is really gone.
    before = _points_of_pool(env, pool.id)
    with _repository(env, pool) as repo:
        on_medium = repo.manifest_ids()
        report.manifests = len(on_medium)
        jobs = _jobs(env)
        known = _known_points(env, on_medium)
        for rp_id in on_medium:
            where = known.get(rp_id)
            if where is None:
                _take_in(env, repo, pool, rp_id, jobs, report)
            elif where[0] != pool.id:
                report.conflicts.append(
                    RescanProblem(rp_id, f"already in the catalog on pool {where[2]!r}")
                )
            else:
                report.already += 1
                if where[1] is None:
                    _relink(env, repo, rp_id, jobs, report)
        present = set(on_medium)
        report.missing = sorted(rp_id for rp_id in before if rp_id not in present)
        if prune_missing and report.missing:
            # Listed again: only a manifest absent twice lets its row go.
            still_gone = set(report.missing) - set(repo.manifest_ids())
            _prune(env, pool.id, sorted(still_gone), report)
    return report


# Opening the medium


@contextmanager
def _medium(env: EngineContext, plugin: MediaPlugin, pool: Pool) -> Iterator[MediaStore]:
    store = plugin.open(pool_info(pool), env.plugin_context(pool.media))
    try:
        yield store
    finally:
        store.close()


def _unwrappable(config: dict[str, Any], master_key: bytes) -> bool:
    if not config["encrypted"]:
        return True
    wrapped = config.get("keys")
    if not isinstance(wrapped, bytes):
        return False  # damaged or missing: an imported key replaces it
    try:
        keys = PoolKeys.unwrap(wrapped, master_key)
    except TapirError:
        return False
    return keys.check_value() == config.get("key_check")


@contextmanager
def _repository(env: EngineContext, pool: Pool) -> Iterator[Repository]:
    plugin = env.registry.media_plugin(pool.media)
    master_key = env.master_key()
    with _medium(env, plugin, pool) as store:
        if not _unwrappable(read_config(store), master_key):
            raise TapirError(key_import_hint(pool.name))
        yield Repository.open(store, master_key=master_key)


# Catalog look-ups


def _refuse_while_running(env: EngineContext, pool: Pool) -> None:
    with env.catalog.session() as s:
        busy = s.scalar(
            select(func.count(Run.id))
            .join(Job, Run.job_id == Job.id)
            .where(Job.pool_id == pool.id, Run.state == RunState.RUNNING)
        )
    if busy:
        # A running backup's manifest may be on the medium before its row is in the
        # catalog; taking it in first would make the backup's own insert fail.
        raise TapirError(
            f"pool {pool.name!r} has {busy} running run(s); rescan it when they have finished"
        )


def _points_of_pool(env: EngineContext, pool_id: int) -> list[str]:
    with env.catalog.session() as s:
        return list(s.scalars(select(RecoveryPoint.id).where(RecoveryPoint.pool_id == pool_id)))


def _known_points(env: EngineContext, ids: list[str]) -> dict[str, tuple[int, int | None, str]]:
    """id -> (pool id, job id, pool name) of the given points the catalog holds."""
    found: dict[str, tuple[int, int | None, str]] = {}
    with env.catalog.session() as s:
        for start in range(0, len(ids), _IN_BATCH):
            batch = ids[start : start + _IN_BATCH]
            rows = s.execute(
                select(RecoveryPoint.id, RecoveryPoint.pool_id, RecoveryPoint.job_id, Pool.name)
                .join(Pool, RecoveryPoint.pool_id == Pool.id)
                .where(RecoveryPoint.id.in_(batch))
            )
            for rp_id, pool_id, job_id, pool_name in rows:
                found[rp_id] = (pool_id, job_id, pool_name)
    return found


def _jobs(env: EngineContext) -> dict[str, tuple[int, str]]:
    """name -> (id, plugin) of every job; a copy job's plugin is "*" (any plugin)."""
    with env.catalog.session() as s:
        return {
            name: (jid, "*" if kind == "copy" else plugin)
            for jid, name, plugin, kind in s.execute(select(Job.id, Job.name, Job.plugin, Job.kind))
        }


def _job_for(
    manifest: Manifest, plugin: str, jobs: dict[str, tuple[int, str]], report: RescanReport
) -> int | None:
    if not manifest.job:
        return None
    found = jobs.get(manifest.job)
    if found is None:
        report.unlinked_jobs[manifest.job] = "no job of that name in the catalog"
        return None
    job_id, job_plugin = found
    if job_plugin not in (plugin, "*"):
        # Another job reusing the name: linking would chain its backups onto foreign points.
        report.unlinked_jobs[manifest.job] = (
            f"the job of that name uses plugin {job_plugin!r}, the points were made by {plugin!r}"
        )
        return None
    return job_id


# Reading manifests and writing rows


def _read(repo: Repository, rp_id: str, report: RescanReport) -> Manifest | None:
    try:
        return repo.read_manifest(rp_id)
    except FileNotFoundError:
        report.unreadable.append(RescanProblem(rp_id, "the manifest vanished while scanning"))
    except (TapirError, OSError, ValueError) as exc:
        report.unreadable.append(RescanProblem(rp_id, str(exc) or type(exc).__name__))
    return None


def _take_in(
    env: EngineContext,
    repo: Repository,
    pool: Pool,
    rp_id: str,
    jobs: dict[str, tuple[int, str]],
    report: RescanReport,
) -> None:
    manifest = _read(repo, rp_id, report)
    if manifest is None:
        return
    try:
        asset = _asset_of(manifest)
        created_at = parse_time(manifest.created_at)
        _check_point(manifest)
    except ValueError as exc:
        report.unreadable.append(RescanProblem(rp_id, f"manifest {rp_id}: {exc}"))
        return
    job_id = _job_for(manifest, asset["plugin"], jobs, report)
    with env.catalog.session() as s:
        asset_id = _asset_id(s, asset, created_at, report)
        row = point_row(
            manifest,
            asset_id=asset_id,
            job_id=job_id,
            pool_id=pool.id,
            run_id=None,  # runs are the old appliance's history, not on the medium
            plugin=asset["plugin"],
        )
        try:
            with s.begin_nested():
                s.add(row)
        except IntegrityError:
            # Inserted meanwhile by another rescan of the same medium.
            report.already += 1
            return
    report.added.append(rp_id)


def _relink(
    env: EngineContext,
    repo: Repository,
    rp_id: str,
    jobs: dict[str, tuple[int, str]],
    report: RescanReport,
) -> None:
    manifest = _read(repo, rp_id, report)
    if manifest is None or not manifest.job:
        return
    plugin = manifest.asset.get("plugin")
    job_id = _job_for(manifest, plugin if isinstance(plugin, str) else "", jobs, report)
    if job_id is None:
        return
    with env.catalog.session() as s:
        row = s.get(RecoveryPoint, rp_id)
        if row is not None and row.job_id is None:
            row.job_id = job_id
            report.relinked.append(rp_id)


def _asset_id(s: Session, asset: dict[str, str], seen_at: datetime, report: RescanReport) -> int:
    # A manifest's asset is a snapshot of the past: never overwrite what discovery
    # or a later backup recorded about an asset that exists.
    change = upsert_asset(
        s,
        asset["plugin"],
        asset["kind"],
        asset["name"],
        asset["external_id"],
        now=seen_at,
        refresh=False,
    )
    if change.added:
        report.assets_created.append(f"{asset['plugin']} {asset['external_id']}")
    return change.row.id


def _prune(env: EngineContext, pool_id: int, gone: list[str], report: RescanReport) -> None:
    with env.catalog.session() as s:
        for rp_id in gone:
            row = s.get(RecoveryPoint, rp_id)
            if row is None or row.pool_id != pool_id:
                continue  # pruned or moved meanwhile
            if row.legal_hold:
                report.held.append(rp_id)
                continue
            s.delete(row)
            report.pruned.append(rp_id)


# Validation of what a manifest says


def _text(value: object, what: str, limit: int, *, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise ValueError(f"the asset's {what} is missing or not text")
    if len(value) > limit:
        raise ValueError(f"the asset's {what} is longer than {limit} characters")
    return value


def _asset_of(manifest: Manifest) -> dict[str, str]:
    a = manifest.asset
    external_id = _text(a.get("external_id"), "external_id", 500)
    return {
        "plugin": _text(a.get("plugin"), "plugin", 100),
        "external_id": external_id,
        "kind": _text(a.get("kind"), "kind", 50, required=False) or "unknown",
        "name": _text(a.get("name"), "name", 500, required=False) or external_id,
    }


def _check_point(manifest: Manifest) -> None:
    if manifest.level not in _LEVELS:
        raise ValueError(f"unknown backup level {manifest.level!r}")
    if not manifest.kind or len(manifest.kind) > 30:
        raise ValueError(f"bad recovery point kind {manifest.kind!r}")
    if len(manifest.id) > 64 or (manifest.parent is not None and len(manifest.parent) > 64):
        raise ValueError("recovery point id longer than 64 characters")


def _made_at(rp: RecoveryPoint) -> datetime:
    """When the point was written: a copy keeps its source's creation time, so its own
    writing time is in its metadata."""
    copied_at = (rp.meta or {}).get("copied_at")
    if isinstance(copied_at, str):
        try:
            return parse_time(copied_at)
        except ValueError:
            pass
    return rp.created_at


def adopt_orphaned_points(env: EngineContext, run_ids: list[int]) -> list[str]:
    """Adopt whole backups that dead runs stored on their pools but never recorded.

    Crash recovery calls this with the runs it just marked failed. Each of their
    pools is rescanned; a point found there that names the run's job and was made
    after the run started is linked to that run and noted in its log. A pool that
    cannot be rescanned now (a backup is running on it, its key is missing) is
    left for an operator's ``tapir pool rescan``.
    """

    with env.catalog.session() as s:
        dead = [
            (run, job, pool)
            for run, job, pool in s.execute(
                select(Run, Job, Pool)
                .join(Job, Run.job_id == Job.id)
                .join(Pool, Job.pool_id == Pool.id)
                .where(Run.id.in_(run_ids), Run.kind.in_(("backup", "copy")))
            )
        ]
        s.expunge_all()
    adopted: list[str] = []
    for pool in {p.id: p for _, _, p in dead}.values():
        try:
            report = rescan_pool(env, pool)
        except Exception as exc:
            log.warning("crash recovery: pool %s not rescanned: %s", pool.name, exc)
            continue
        if not report.added:
            continue
        links: list[tuple[int, str]] = []
        with env.catalog.session() as s:
            for rp in s.scalars(select(RecoveryPoint).where(RecoveryPoint.id.in_(report.added))):
                for run, job, p in dead:
                    started = run.started_at or run.queued_at
                    if p.id == pool.id and rp.job_id == job.id and _made_at(rp) >= started:
                        rp.run_id = run.id
                        links.append((run.id, rp.id))
                        break
        for run_id, rp_id in links:
            adopted.append(rp_id)
            runs_mod.log_line(
                env.catalog,
                run_id,
                f"recovery point {rp_id} was stored whole on pool {pool.name} before the "
                "worker died; it has been adopted into the catalog",
                "WARNING",
            )
    return adopted
