"""Applying retention: per job, asset and pool, delete the points no rule keeps.

A copy job's points are split further by the job they were copied from, so each
source chain keeps its own newest point and GFS buckets on the target.

The policy is the job's, else the pool's; points with neither are all kept. A real
prune deletes each point's manifest from the medium first and its row second, so
the catalog never names a point whose manifest is gone... except for the moment in
between, when the point is already unusable and about to vanish. Chunks stay on
the medium until ``gc``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from sqlalchemy import select

from ..catalog.lookup import id_by_name
from ..catalog.models import Asset, Job, Pool, RecoveryPoint, RetentionPolicy, utcnow
from ..datapath.repository import Repository
from .context import EngineContext
from .copy import copy_chain_key
from .pools import open_repository
from .retention import PointInfo, RetentionRules, plan_retention

log = logging.getLogger(__name__)


@dataclass
class PruneDecision:
    """Keep or delete one recovery point, with the rules that keep it."""

    recovery_point_id: str
    asset: str
    job: str | None
    created_at: datetime
    keep: bool
    reasons: list[str] = field(default_factory=list)  # e.g. ["keep-last 3", "daily"]


@dataclass
class PrunePlan:
    """Every decision of a prune, and how many points a real prune deleted."""

    decisions: list[PruneDecision]
    dry_run: bool
    deleted: int = 0


def plan_prune(
    env: EngineContext,
    job: str | None = None,
    now: datetime | None = None,
    tz: tzinfo | None = None,
) -> tuple[list[PruneDecision], dict[str, int]]:
    """The decisions for every chain (of ``job`` only, when given), and each point's pool id."""
    now = now or utcnow()
    with env.catalog.session() as s:
        q = (
            select(RecoveryPoint, Asset.name, Job, Pool)
            .join(Asset, RecoveryPoint.asset_id == Asset.id)
            .join(Pool, RecoveryPoint.pool_id == Pool.id)
            .outerjoin(Job, RecoveryPoint.job_id == Job.id)
        )
        if job is not None:
            job_id = id_by_name(s, Job, job, "job")
            q = q.where(RecoveryPoint.job_id == job_id)
        rows = s.execute(q).all()
        policies = {p.id: p for p in s.scalars(select(RetentionPolicy))}
    # A copy job's points form one chain per source job (see engine/copy.py).
    Chain = tuple[int | None, int, int, str | None]
    chains: dict[Chain, list[tuple[RecoveryPoint, str, Job | None]]] = defaultdict(list)
    policy_of: dict[Chain, RetentionPolicy | None] = {}
    pool_of: dict[str, int] = {}
    for rp, asset_name, job_row, pool in rows:
        key = (rp.job_id, rp.asset_id, rp.pool_id, copy_chain_key(rp))
        chains[key].append((rp, asset_name, job_row))
        pool_of[rp.id] = pool.id
        policy_id = (
            job_row.retention_policy_id
            if job_row is not None and job_row.retention_policy_id
            else pool.retention_policy_id
        )
        policy_of[key] = policies.get(policy_id) if policy_id else None
    decisions: list[PruneDecision] = []
    for key, members in chains.items():
        by_id = {rp.id: (rp, asset_name, job_row) for rp, asset_name, job_row in members}
        policy = policy_of[key]
        if policy is None:
            for rp, asset_name, job_row in members:
                decisions.append(
                    PruneDecision(
                        rp.id,
                        asset_name,
                        job_row.name if job_row else None,
                        rp.created_at,
                        True,
                        ["no retention policy"],
                    )
                )
            continue
        points = [PointInfo(rp.id, rp.created_at, rp.legal_hold) for rp, _, _ in members]
        kwargs = {"tz": tz} if tz is not None else {}
        for d in plan_retention(points, RetentionRules.from_policy(policy), now, **kwargs):
            rp, asset_name, job_row = by_id[d.id]
            reasons = list(d.reasons) if d.keep else [f"policy {policy.name}: no rule keeps it"]
            decisions.append(
                PruneDecision(
                    d.id,
                    asset_name,
                    job_row.name if job_row else None,
                    d.created_at,
                    d.keep,
                    reasons,
                )
            )
    decisions.sort(key=lambda d: (d.job or "", d.asset, d.created_at), reverse=False)
    return decisions, pool_of


def prune(
    env: EngineContext,
    dry_run: bool = True,
    job: str | None = None,
    now: datetime | None = None,
    tz: tzinfo | None = None,
) -> PrunePlan:
    """Plan, and unless ``dry_run`` delete, the points retention does not keep.

    ``tz``: the zone whose calendar the GFS rules count days, weeks... in (default UTC).
    """
    decisions, pool_of = plan_prune(env, job, now, tz)
    plan = PrunePlan(decisions=decisions, dry_run=dry_run)
    if dry_run:
        return plan
    doomed: dict[int, list[PruneDecision]] = defaultdict(list)
    for d in decisions:
        if not d.keep:
            doomed[pool_of[d.recovery_point_id]].append(d)
    for pool_id, items in doomed.items():
        with env.catalog.session() as s:
            pool = s.get(Pool, pool_id)
        assert pool is not None
        with open_repository(env, pool) as repo:
            for d in items:
                if _delete_point(env, repo, d):
                    plan.deleted += 1
    return plan


def _delete_point(env: EngineContext, repo: Repository, d: PruneDecision) -> bool:
    with env.catalog.session() as s:
        rp = s.get(RecoveryPoint, d.recovery_point_id)
        if rp is None:
            return False
        if rp.legal_hold:
            # Held between planning and now: the hold wins.
            d.keep = True
            d.reasons = ["legal hold"]
            return False
        try:
            repo.delete_manifest(rp.id)
        except FileNotFoundError:
            log.warning("recovery point %s had no manifest on its medium", rp.id)
        s.delete(rp)
    log.info("pruned recovery point %s (%s, %s)", d.recovery_point_id, d.asset, d.job)
    return True
