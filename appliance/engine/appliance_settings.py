"""Appliance-wide settings kept in the catalog, shared by every process on it.

The time zone is the one that matters to scheduling: a schedule created without a
zone of its own follows it (``Schedule.zone_from_appliance``), and changing it
moves those schedules to the new zone at once. Unset, it is the host's zone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from ..catalog.database import Catalog
from ..catalog.models import ApplianceSetting, Schedule, utcnow
from . import scheduler

TIMEZONE = "timezone"


def get(catalog: Catalog, key: str, default: Any = None) -> Any:
    """A setting's value, or ``default`` when it was never set."""
    with catalog.session() as s:
        row = s.get(ApplianceSetting, key)
        return default if row is None else row.value


def put(catalog: Catalog, key: str, value: Any) -> None:
    """Create or replace a setting."""
    with catalog.session() as s:
        row = s.get(ApplianceSetting, key)
        if row is None:
            s.add(ApplianceSetting(key=key, value=value, updated_at=utcnow()))
        else:
            row.value = value
            row.updated_at = utcnow()


def timezone(catalog: Catalog, system_zone: str) -> str:
    """The appliance's time zone: the setting, else ``system_zone`` (the host's)."""
    value = get(catalog, TIMEZONE)
    return value if isinstance(value, str) and value else system_zone


def set_timezone(catalog: Catalog, name: str, now: datetime | None = None) -> int:
    """Set the appliance's time zone (ValueError for an unknown zone, nothing changed) and
    move the schedules that follow it; returns how many moved.

    Their next fire time is computed afresh in the new zone from ``now``.
    """
    name = name.strip()
    scheduler.zone(name)
    now = now or utcnow()
    moved = 0
    with catalog.session() as s:
        row = s.get(ApplianceSetting, TIMEZONE)
        if row is None:
            s.add(ApplianceSetting(key=TIMEZONE, value=name, updated_at=now))
        else:
            row.value, row.updated_at = name, now
        for sched in s.scalars(select(Schedule).where(Schedule.zone_from_appliance.is_(True))):
            if sched.timezone == name:
                continue
            sched.timezone = name
            sched.next_run_at = scheduler.next_fire(sched.cron, name, now)
            moved += 1
    return moved
