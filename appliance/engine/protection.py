"""Which jobs protect each discovered asset, and its last good recovery point.

Evaluated on the catalog, the way a run would select (see rule_assets.py and
backup.resolve_assets) but without contacting any endpoint:

- a job with selection rules protects the present assets of its endpoint (and
  plugin) that its rules select;
- a job listing assets protects those, by name or external id;
- a job with an endpoint and no selection protects every asset of that endpoint;
- a job without an endpoint (files, databases) protects what it backed up so far.

Only enabled backup jobs protect; a disabled job is shown apart. An asset marked
gone (no longer offered by its endpoint) keeps its state and its recovery points.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select

from ..catalog.models import Asset, Endpoint, Job, RecoveryPoint
from ..plugin_api.context import AssetInfo
from .context import EngineContext
from .copy import COPY_KIND
from .selection import RuleSet


@dataclass
class Protection:
    """One asset and what protects it."""

    asset_id: int
    name: str
    external_id: str
    kind: str
    plugin: str
    endpoint: str | None
    present: bool
    last_seen_at: datetime | None
    jobs: list[tuple[str, str]] = field(default_factory=list)  # (job, how: rule text...)
    disabled_jobs: list[str] = field(default_factory=list)
    last_point_id: str | None = None
    last_point_at: datetime | None = None

    @property
    def protected(self) -> bool:
        """True when an enabled job would back the asset up."""
        return bool(self.jobs)

    def as_record(self) -> dict[str, object]:
        """The JSON shape of the API and ``tapir endpoint assets --json``."""
        return {
            "id": self.asset_id,
            "name": self.name,
            "external_id": self.external_id,
            "kind": self.kind,
            "plugin": self.plugin,
            "endpoint": self.endpoint,
            "present": self.present,
            "last_seen_at": self.last_seen_at,
            "protected": self.protected,
            "jobs": [{"job": j, "by": how} for j, how in self.jobs],
            "disabled_jobs": list(self.disabled_jobs),
            "last_recovery_point": self.last_point_id,
            "last_recovery_point_at": self.last_point_at,
        }


def _how(job: Job, asset: Asset) -> str | None:
    """Why ``job`` protects ``asset`` ("rule folder=/x", "asset", "all"), or None."""
    if job.plugin != asset.plugin or job.endpoint_id != asset.endpoint_id:
        return None
    rules = RuleSet.from_selection(job.selection)
    if rules is not None:
        if not asset.present:
            return None
        info = AssetInfo(asset.kind, asset.name, asset.external_id, dict(asset.meta or {}))
        decision = rules.decide(info)
        return f"rule {decision.rule}" if decision.selected else None
    wanted = (job.selection or {}).get("assets")
    if wanted:
        return "asset" if asset.name in wanted or asset.external_id in wanted else None
    if job.endpoint_id is not None:
        return "all assets of the endpoint"
    return None


def protection(env: EngineContext, endpoint: str | None = None) -> list[Protection]:
    """Every asset (of ``endpoint``, when given), by endpoint and name, with its protection."""
    with env.catalog.session() as s:
        q = select(Asset).order_by(Asset.endpoint_id, Asset.name, Asset.id)
        if endpoint is not None:
            endpoint_id = s.scalar(select(Endpoint.id).where(Endpoint.name == endpoint))
            if endpoint_id is None:
                raise KeyError(f"no endpoint named {endpoint!r}")
            q = q.where(Asset.endpoint_id == endpoint_id)
        assets = list(s.scalars(q))
        endpoints = {e.id: e.name for e in s.scalars(select(Endpoint))}
        jobs = [j for j in s.scalars(select(Job).order_by(Job.name)) if j.kind != COPY_KIND]
        backed_up: dict[int, set[int]] = defaultdict(set)  # asset id -> job ids with points
        for asset_id, job_id in s.execute(
            select(RecoveryPoint.asset_id, RecoveryPoint.job_id).distinct()
        ):
            if job_id is not None:
                backed_up[asset_id].add(job_id)
        last: dict[int, tuple[str, datetime]] = {}
        for asset_id, rp_id, created_at in s.execute(
            select(RecoveryPoint.asset_id, RecoveryPoint.id, RecoveryPoint.created_at).order_by(
                RecoveryPoint.created_at, RecoveryPoint.id
            )
        ):
            last[asset_id] = (rp_id, created_at)  # ascending: the newest is written last
    result = []
    for asset in assets:
        entry = Protection(
            asset.id,
            asset.name,
            asset.external_id,
            asset.kind,
            asset.plugin,
            endpoints.get(asset.endpoint_id) if asset.endpoint_id else None,
            bool(asset.present),
            asset.last_seen_at,
            last_point_id=last[asset.id][0] if asset.id in last else None,
            last_point_at=last[asset.id][1] if asset.id in last else None,
        )
        for job in jobs:
            how = _how(job, asset)
            if how is None and job.endpoint_id is None and job.id in backed_up[asset.id]:
                how = "backed up by the job"
            if how is None:
                continue
            if job.enabled:
                entry.jobs.append((job.name, how))
            else:
                entry.disabled_jobs.append(job.name)
        result.append(entry)
    return result


def unprotected(env: EngineContext) -> list[Protection]:
    """Present assets no enabled job protects (the dashboard's list)."""
    return [p for p in protection(env) if p.present and not p.protected]
