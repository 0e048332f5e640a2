"""Recording discovered assets in the catalog, from discovery, backups and rescans."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..catalog.models import Asset


def jsonable(value: dict[str, Any]) -> dict[str, Any]:
    """Plugin metadata for a JSON column: anything JSON cannot hold is kept as text."""
    return json.loads(json.dumps(value, default=str))


@dataclass
class AssetChange:
    """An asset row after :func:`upsert_asset`, and what happened to it."""

    row: Asset
    added: bool = False
    renamed_from: str | None = None
    returned: bool = False  # it had been marked gone and is present again


def upsert_asset(
    s: Session,
    plugin: str,
    kind: str,
    name: str,
    external_id: str,
    *,
    now: datetime,
    meta: dict[str, Any] | None = None,
    endpoint_id: int | None = None,
    refresh: bool = True,
) -> AssetChange:
    """Find the asset by plugin and external id, or insert it.

    With ``refresh`` an existing row takes the new name, kind, metadata (and
    endpoint, when given) and is marked present; without it (a rescan reading old
    manifests) an existing row is left as it is. Two processes may record the same
    new asset at once (PostgreSQL does not serialise them as SQLite's BEGIN
    IMMEDIATE does): the loser of the insert takes the winner's row.
    """
    query = select(Asset).where(Asset.plugin == plugin, Asset.external_id == external_id)
    row = s.scalar(query)
    if row is None:
        try:
            with s.begin_nested():
                row = Asset(
                    plugin=plugin,
                    kind=kind,
                    name=name,
                    external_id=external_id,
                    meta=jsonable(meta or {}),
                    endpoint_id=endpoint_id,
                    present=True,
                    first_seen_at=now,
                    last_seen_at=now,
                )
                s.add(row)
            return AssetChange(row, added=True)
        except IntegrityError:
            row = s.scalar(query)
            if row is None:
                raise
    change = AssetChange(row)
    if not refresh:
        return change
    if row.name != name:
        change.renamed_from = row.name
    change.returned = not row.present
    row.name, row.kind = name, kind
    if meta is not None:
        row.meta = jsonable(meta)
    if endpoint_id is not None:
        row.endpoint_id = endpoint_id
    row.present = True
    row.last_seen_at = now
    return change
