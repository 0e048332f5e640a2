"""Pool usage over time and the tape library's state as the catalog knows it.

Usage samples are taken by the scheduler's tick and at the end of each run, at most
one per pool per :data:`SAMPLE_INTERVAL`, so the chart costs a few thousand rows a
pool a year. The library status is read from the core's own tables (pools, volumes,
devices, runs, tape_alerts): the core never asks the tape plugin.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from ..catalog.database import Catalog
from ..catalog.models import Device, Job, Pool, Run, RunState, Volume
from ..catalog.web_models import PoolUsageSample, TapeAlertRecord

log = logging.getLogger(__name__)

SAMPLE_INTERVAL = timedelta(hours=1)
TAPE_MEDIA = "tape"
_DRIVE_LOCATION = re.compile(r"drive (\d+)$")


def record_samples(
    catalog: Catalog,
    usage: Callable[[str], dict[str, Any]],
    now: datetime | None = None,
) -> list[str]:
    """Sample every pool whose newest sample is older than the interval; the pools sampled.

    ``usage`` is the facade's ``pool_usage``; a pool whose medium cannot be read now
    (a disk gone, say) is skipped and sampled at a later tick.
    """
    now = now or datetime.now(UTC)
    with catalog.session() as s:
        newest = dict(
            s.execute(
                select(PoolUsageSample.pool_id, func.max(PoolUsageSample.taken_at)).group_by(
                    PoolUsageSample.pool_id
                )
            ).all()
        )
        pools = [(p.id, p.name) for p in s.scalars(select(Pool).order_by(Pool.name))]
    sampled = []
    for pool_id, name in pools:
        last = newest.get(pool_id)
        if last is not None and now - last < SAMPLE_INTERVAL:
            continue
        try:
            current = usage(name)
        except Exception as exc:  # an unreachable medium must not stop the other pools' samples
            log.info("no usage sample of pool %s now: %s", name, exc)
            continue
        with catalog.session() as s:
            s.add(
                PoolUsageSample(
                    pool_id=pool_id,
                    taken_at=now,
                    used=int(current["used"]),
                    free=current.get("free"),
                    logical=int(current["logical"]),
                )
            )
        sampled.append(name)
    return sampled


def days_ago(days: int) -> datetime:
    """The moment ``days`` days before now."""
    return datetime.now(UTC) - timedelta(days=days)


def samples(catalog: Catalog, pool: str, since: datetime) -> list[dict[str, Any]]:
    """A pool's samples from ``since`` on, oldest first (KeyError for an unknown pool)."""
    with catalog.session() as s:
        pool_id = s.scalar(select(Pool.id).where(Pool.name == pool))
        if pool_id is None:
            raise KeyError(f"no pool named {pool!r}")
        rows = s.scalars(
            select(PoolUsageSample)
            .where(PoolUsageSample.pool_id == pool_id, PoolUsageSample.taken_at >= since)
            .order_by(PoolUsageSample.taken_at)
        )
        return [
            {"at": r.taken_at, "used": r.used, "free": r.free, "logical": r.logical} for r in rows
        ]


@dataclass
class DriveStatus:
    """One drive: ``state`` is busy (a cartridge of a pool being written is in it),
    loaded (a cartridge, no run on its pool), idle (empty) or disabled."""

    name: str
    number: int | None
    changer: str | None
    state: str
    cartridge: str | None = None
    alerts: list[str] = field(default_factory=list)
    alerts_seen_at: datetime | None = None


@dataclass
class LibraryStatus:
    """The library as the catalog knows it; ``tape_pools`` empty: no tape pool."""

    tape_pools: list[str]
    drives: list[DriveStatus]
    cartridges: dict[str, int]

    def as_record(self) -> dict[str, Any]:
        return {
            "tape_pools": self.tape_pools,
            "drives": [d.__dict__ for d in self.drives],
            "cartridges": self.cartridges,
        }


def _cartridge_counts(volumes: list[Volume]) -> dict[str, int]:
    counts = {"scratch": 0, "writable": 0, "full": 0, "offline": 0, "other": 0, "total": 0}
    for v in volumes:
        counts["total"] += 1
        # Offline (out of the library, in a vault) counts apart from its data state.
        if v.location == "offline" or v.location.startswith("vault"):
            counts["offline"] += 1
        elif v.state in counts:
            counts[v.state] += 1
        else:
            counts["other"] += 1
    return counts


def library_status(catalog: Catalog) -> LibraryStatus:
    """Drives busy/loaded/idle, cartridge counts by state and the TapeAlerts last seen."""
    with catalog.session() as s:
        tape_pools = {p.id: p.name for p in s.scalars(select(Pool).where(Pool.media == TAPE_MEDIA))}
        if not tape_pools:
            return LibraryStatus([], [], {})
        volumes = list(
            s.scalars(
                select(Volume).where((Volume.pool_id.in_(tape_pools)) | (Volume.pool_id.is_(None)))
            )
        )
        writing = set(
            s.scalars(
                select(Job.pool_id)
                .join(Run, Run.job_id == Job.id)
                .where(Run.state == RunState.RUNNING, Job.pool_id.in_(tape_pools))
            )
        )
        devices = list(s.scalars(select(Device).order_by(Device.name)))
        changers = {d.id: d.name for d in devices if d.kind == "changer"}
        alerts = {a.device_id: a for a in s.scalars(select(TapeAlertRecord))}
    in_drive = {}
    for v in volumes:
        match = _DRIVE_LOCATION.match(v.location)
        if match:
            in_drive[int(match.group(1))] = v
    drives = []
    for d in devices:
        if d.kind != "drive":
            continue
        cartridge = in_drive.get(d.drive_number) if d.drive_number is not None else None
        if not d.enabled:
            state = "disabled"
        elif cartridge is None:
            state = "idle"
        elif cartridge.pool_id in writing:
            state = "busy"
        else:
            state = "loaded"
        alert = alerts.get(d.id)
        drives.append(
            DriveStatus(
                name=d.name,
                number=d.drive_number,
                changer=changers.get(d.changer_id) if d.changer_id else None,
                state=state,
                cartridge=cartridge.label if cartridge else None,
                alerts=list(alert.flags) if alert else [],
                alerts_seen_at=alert.seen_at if alert else None,
            )
        )
    return LibraryStatus(sorted(tape_pools.values()), drives, _cartridge_counts(volumes))


def record_tape_alerts(
    catalog: Catalog, drive: str, flags: list[str], now: datetime | None = None
) -> None:
    """Remember the TapeAlert flags just read from ``drive`` (an empty list: none active)."""
    if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
        raise ValueError("TapeAlert flags must be a list of strings")
    with catalog.session() as s:
        device = s.scalar(select(Device).where(Device.name == drive, Device.kind == "drive"))
        if device is None:
            raise KeyError(f"no tape drive named {drive!r}")
        row = s.scalar(select(TapeAlertRecord).where(TapeAlertRecord.device_id == device.id))
        if row is None:
            row = TapeAlertRecord(device_id=device.id)
            s.add(row)
        row.flags = list(flags)
        row.seen_at = now or datetime.now(UTC)
