"""Allocation policy: when a backup starts a new media set, and which volume it takes.

``continue`` appends to the current media set as long as it has one;
``always-new`` starts a new set for every backup session; a cron expression
(``0 0 * * 6``: weekly, on Saturday) starts a new set at the first backup
after each time the expression fires since the current set was started.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from croniter import croniter

from tapir.appliance.plugin_api import TapirError, VolumeInfo

CONTINUE = "continue"
ALWAYS_NEW = "always-new"


def validate_allocation(value: str) -> str:
    """``continue``, ``always-new`` or a 5-field cron expression; TapirError otherwise."""
    value = value.strip()
    if value in (CONTINUE, ALWAYS_NEW):
        return value
    if len(value.split()) == 5 and croniter.is_valid(value):
        return value
    raise TapirError(
        f"allocation {value!r} is not continue, always-new or a cron expression "
        "(minute hour day month weekday, e.g. '0 0 * * 6' for weekly)"
    )


def parse_time(text: str) -> datetime:
    """An ISO 8601 time of the tape format, as an aware datetime (UTC when naive)."""
    at = datetime.fromisoformat(text)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def starts_new_set(allocation: str, current_created: datetime | None, now: datetime) -> bool:
    """Whether a session starting at ``now`` begins a new media set."""
    if current_created is None or allocation == ALWAYS_NEW:
        return True
    if allocation == CONTINUE:
        return False
    fire = croniter(allocation, current_created).get_next(datetime)
    return fire <= now


def new_volume_candidates(
    volumes: Iterable[VolumeInfo], pool: str, present: set[str]
) -> list[VolumeInfo]:
    """Volumes a media set of ``pool`` may take next, best first.

    Scratch volumes of the pool, then scratch volumes of no pool (the scratch
    pool feeds every pool), then expired or recyclable volumes of this pool
    (oldest write first). Only cartridges in the library (``present``) count;
    cleaning cartridges and WORM cartridges that hold data never do.
    """
    own, shared, recycle = [], [], []
    for vol in volumes:
        if vol.label not in present or vol.cleaning:
            continue
        if vol.state == "scratch" and vol.pool == pool:
            own.append(vol)
        elif vol.state == "scratch" and vol.pool is None:
            shared.append(vol)
        elif vol.state in ("expired", "recyclable") and vol.pool == pool and not vol.worm:
            recycle.append(vol)
    oldest = datetime.min.replace(tzinfo=UTC)
    recycle.sort(key=lambda v: (v.last_written_at or oldest, v.label))
    return sorted(own, key=lambda v: v.label) + sorted(shared, key=lambda v: v.label) + recycle


def require_candidates(candidates: list[VolumeInfo], pool: str, refused: list[str]) -> None:
    """TapirError when no volume is left to write, with every refusal's reason."""
    if not candidates:
        why = "; ".join(refused) if refused else "no scratch or recyclable volume in the library"
        raise TapirError(f"pool {pool}: no volume to write ({why})")
