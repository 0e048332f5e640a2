"""Retention of tape pools: expiring media sets and returning their volumes to use.

A tape pool keeps its media sets either ``retention_days`` after the set's last
write (counted once the set is sealed: an open set is never expired) or as the
newest ``retention_sets`` sets. When a set expires, its index entries are
dropped, the recovery points it held are pruned from the catalog (through
``tapir pool rescan POOL --prune-missing``, so the engine's own rules apply),
and its volumes become ``expired`` and then ``scratch`` of the same pool, ready
to be overwritten. WORM volumes become ``retired`` instead: Tapir never reuses
them. A media set that holds a recovery point under legal hold is never expired.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tapir.appliance.plugin_api import PluginContext, TapirError, VolumeInfo

from .inventory import registry
from .poolindex import open_index, tape_pools

#: Returns the catalog's recovery points as ``tapir backups --json`` prints them.
PointsFn = Callable[[], list[dict[str, Any]]]
#: Prunes a pool's catalog points whose manifest is gone (``pool rescan --prune-missing``).
PruneFn = Callable[[str], dict[str, Any]]


@dataclass
class SetExpiry:
    """One media set that is due (or held back), and what expiring it does."""

    pool: str
    media_set: str
    created_at: str
    reason: str
    volumes: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)  # WORM volumes
    recovery_points: list[str] = field(default_factory=list)
    held_points: list[str] = field(default_factory=list)


@dataclass
class ExpireReport:
    """The outcome of :func:`expire`."""

    dry_run: bool
    expired: list[SetExpiry] = field(default_factory=list)
    held: list[SetExpiry] = field(default_factory=list)  # due but under legal hold
    pruned: dict[str, list[str]] = field(default_factory=dict)  # pool -> recovery points
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dataclasses.asdict(self)

    def lines(self) -> list[str]:
        """The report for an operator, one line per fact."""
        verb = "would expire" if self.dry_run else "expired"
        out = []
        for s in self.expired:
            out.append(
                f"pool {s.pool}: {verb} media set {s.media_set} ({s.reason}): "
                f"{len(s.recovery_points)} recovery point(s)"
            )
            scratch = [v for v in s.volumes if v not in s.retired]
            if scratch:
                out.append(f"  volumes back to scratch: {', '.join(scratch)}")
            if s.retired:
                out.append(f"  WORM volumes retired (never reused): {', '.join(s.retired)}")
            for rp in s.recovery_points:
                out.append(f"  recovery point {rp}")
        for s in self.held:
            out.append(
                f"pool {s.pool}: media set {s.media_set} is due ({s.reason}) but kept: "
                f"legal hold on {', '.join(s.held_points)}"
            )
        for pool, points in self.pruned.items():
            out.append(f"pool {pool}: {len(points)} recovery point(s) removed from the catalog")
        if not self.expired and not self.held:
            out.append("no media set is due to expire")
        out.extend(f"error: {e}" for e in self.errors)
        return out


def parse_time(text: str) -> datetime:
    """An ISO 8601 time (the tape format's spelling) as an aware datetime."""
    at = datetime.fromisoformat(text)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def last_write(media_set_created: str, volumes: list[VolumeInfo]) -> datetime:
    """When a media set was last written: its newest volume write, else its creation."""
    times = [v.last_written_at for v in volumes if v.last_written_at is not None]
    return max(times) if times else parse_time(media_set_created)


def due_sets(
    sets: list[Any],
    volumes_of: Callable[[str], list[VolumeInfo]],
    *,
    retention_days: int | None,
    retention_sets: int | None,
    now: datetime,
) -> list[tuple[Any, str]]:
    """The media sets (index rows) whose retention has ended, with the reason. Pure.

    Only sealed, not yet expired sets are candidates: an open set still receives
    backups. ``retention_sets`` keeps the newest N sets (open ones included).
    """
    live = [s for s in sets if not s.expired]
    due: list[tuple[Any, str]] = []
    if retention_sets is not None:
        ordered = sorted(live, key=lambda s: s.created_at)
        keep = ordered[-retention_sets:] if retention_sets else []
        for s in ordered:
            if s not in keep and s.sealed:
                due.append((s, f"more than {retention_sets} newer media set(s)"))
    elif retention_days is not None:
        for s in live:
            if not s.sealed:
                continue
            until = last_write(s.created_at, volumes_of(s.uuid)) + timedelta(days=retention_days)
            if until <= now:
                due.append((s, f"last written more than {retention_days} day(s) ago"))
    return due


def expiry_time(
    media_set: Any, volumes: list[VolumeInfo], retention_days: int | None
) -> datetime | None:
    """When a sealed media set will expire under ``retention_days`` (None: not by date)."""
    if retention_days is None or not media_set.sealed:
        return None
    return last_write(media_set.created_at, volumes) + timedelta(days=retention_days)


def expire(
    ctx: PluginContext,
    *,
    pool: str | None = None,
    dry_run: bool = False,
    recovery_points: PointsFn,
    prune: PruneFn,
    now: datetime | None = None,
) -> ExpireReport:
    """Apply the retention of ``pool`` (or every tape pool) and report what happened.

    Legal holds are read from the catalog's recovery points (``recovery_points``)
    and joined with the pool's tape index, which says on which media set each
    recovery point's manifest is. A held point the index cannot place holds back
    every due set of its pool: Tapir cannot prove that set does not hold it.
    """
    now = now or datetime.now(UTC)
    volumes = registry(ctx)
    report = ExpireReport(dry_run=dry_run)
    points = None
    for name, settings in tape_pools(ctx, pool):
        index = open_index(ctx, name)
        try:
            sets = index.media_sets()
            due = due_sets(
                sets,
                lambda uuid, name=name: volumes.list(pool=name, media_set=uuid),
                retention_days=settings.retention_days,
                retention_sets=settings.retention_sets,
                now=now,
            )
            if not due:
                continue
            if points is None:
                points = recovery_points()
            held = _held_points(points, name, index)
            for media_set, reason in due:
                entry = _describe(
                    index,
                    volumes.list(pool=name, media_set=media_set.uuid),
                    name,
                    media_set,
                    reason,
                )
                on_hold = held.get(media_set.uuid, []) + held.get("", [])
                if on_hold:
                    entry.held_points = sorted(on_hold)
                    report.held.append(entry)
                    continue
                report.expired.append(entry)
                if not dry_run:
                    index.expire_media_set(media_set.uuid)
                    _mark(volumes, entry, now, state="expired")
            expired_here = [e for e in report.expired if e.pool == name]
            if dry_run or not expired_here:
                continue
            try:
                result = prune(name)
                report.pruned[name] = list(result.get("pruned", []))
                if result.get("held"):
                    report.errors.append(
                        f"pool {name}: recovery points under legal hold lost their media: "
                        + ", ".join(result["held"])
                    )
            except (TapirError, KeyError, ValueError, OSError) as exc:
                report.errors.append(
                    f"pool {name}: the catalog still lists the expired recovery points "
                    f"({exc}); run 'tapir pool rescan {name} --prune-missing'"
                )
            for entry in expired_here:
                for label in entry.volumes:
                    index.forget_volume(label)
                _recycle(volumes, entry)
        finally:
            index.close()
    return report


def _held_points(points: list[dict[str, Any]], pool: str, index: Any) -> dict[str, list[str]]:
    """Media set uuid -> held recovery points on it ("" for points the index cannot place)."""
    held: dict[str, list[str]] = {}
    for p in points:
        if p.get("pool") != pool or not p.get("legal_hold"):
            continue
        where = index.manifest_location(p["id"])
        held.setdefault(where.media_set if where is not None else "", []).append(p["id"])
    return held


def _describe(
    index: Any, vols: list[VolumeInfo], pool: str, media_set: Any, reason: str
) -> SetExpiry:
    names = []
    for name in index.manifest_names():
        where = index.manifest_location(name)
        if where is not None and where.media_set == media_set.uuid:
            names.append(name)
    return SetExpiry(
        pool=pool,
        media_set=media_set.uuid,
        created_at=media_set.created_at,
        reason=reason,
        volumes=[v.label for v in vols],
        retired=[v.label for v in vols if v.worm],
        recovery_points=sorted(names),
    )


def _mark(volumes: Any, entry: SetExpiry, now: datetime, *, state: str) -> None:
    for label in entry.volumes:
        row = volumes.get(label)
        if row is not None and row.state != state:
            volumes.save(dataclasses.replace(row, state=state, expires_at=now))


def _recycle(volumes: Any, entry: SetExpiry) -> None:
    for label in entry.volumes:
        row = volumes.get(label)
        if row is None:
            continue
        if row.worm:
            volumes.save(dataclasses.replace(row, state="retired"))
            continue
        volumes.save(
            dataclasses.replace(
                row,
                state="scratch",
                media_set=None,
                media_set_seq=None,
                bytes_used=0,
                expires_at=None,
            )
        )
