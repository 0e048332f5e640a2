"""What a retention policy would keep and delete today, before it is saved.

Runs the engine's own rules (:func:`plan_retention`) on the catalog's recovery
points, chain by chain (job, asset and pool), exactly as ``prune`` would group them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

from ..engine.retention import PointInfo, RetentionRules, plan_retention
from ..engine.service import Appliance


@dataclass(frozen=True)
class PreviewRow:
    """One recovery point and the policy's verdict on it."""

    recovery_point: str
    job: str | None
    asset: str
    pool: str
    created_at: datetime
    keep: bool
    reasons: list[str]


def preview(
    app: Appliance,
    rules: dict[str, int | None],
    pool: str | None = None,
    now: datetime | None = None,
) -> list[PreviewRow]:
    """Every point (of ``pool``, when given) with keep/delete under ``rules``."""
    now = now or datetime.now(UTC)
    if pool is not None and pool not in {p.name for p in app.pools()}:
        raise KeyError(f"no pool named {pool!r}")
    chains: dict[tuple[int | None, int, int], list] = defaultdict(list)
    for rp in app.recovery_points():
        if pool is None or rp.pool.name == pool:
            chains[(rp.job_id, rp.asset_id, rp.pool_id)].append(rp)
    policy = RetentionRules(**rules)
    rows = []
    for points in chains.values():
        by_id = {rp.id: rp for rp in points}
        infos = [PointInfo(rp.id, rp.created_at, rp.legal_hold) for rp in points]
        for d in plan_retention(infos, policy, now, tz=app.zone()):
            rp = by_id[d.id]
            rows.append(
                PreviewRow(
                    rp.id,
                    rp.job.name if rp.job else None,
                    rp.asset.name,
                    rp.pool.name,
                    rp.created_at,
                    d.keep,
                    d.reasons,
                )
            )
    rows.sort(key=lambda r: (r.pool, r.job or "", r.asset, r.created_at), reverse=True)
    return rows
