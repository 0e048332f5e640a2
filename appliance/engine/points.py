"""Catalog rows of recovery points, made from the manifests that define them."""

from __future__ import annotations

from datetime import UTC, datetime

from ..catalog.models import RecoveryPoint
from ..datapath.manifest import Manifest
from .assets import jsonable


def parse_time(text: str) -> datetime:
    """A manifest's ISO 8601 time, time-zone aware (UTC when it names no zone)."""
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"created_at {text!r} is not an ISO 8601 time") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def point_row(
    manifest: Manifest,
    *,
    asset_id: int,
    job_id: int | None,
    pool_id: int,
    run_id: int | None,
    plugin: str,
) -> RecoveryPoint:
    """The catalog row that records ``manifest`` (not yet added to a session)."""
    return RecoveryPoint(
        id=manifest.id,
        asset_id=asset_id,
        job_id=job_id,
        pool_id=pool_id,
        run_id=run_id,
        parent_id=manifest.parent,
        kind=manifest.kind,
        level=manifest.level,
        plugin=plugin,
        created_at=parse_time(manifest.created_at),
        items=manifest.items,
        bytes_logical=manifest.bytes_logical,
        bytes_new=manifest.bytes_new,
        warnings=len(manifest.warnings),
        meta=jsonable(dict(manifest.metadata)),
    )
