"""Which recovery points a retention policy keeps: pure functions, no catalog, no clock.

The rules combine (a point is kept when any rule keeps it):

- ``keep_within_days``: every point younger than N days;
- ``keep_last``: the N newest points;
- ``keep_daily/weekly/monthly/yearly`` (grandfather-father-son): the newest point of
  each of the last N days / ISO weeks / months / years that have points;
- a point under legal hold is always kept, and so is the newest point of a chain.

A policy without any rule keeps everything. An incremental's parent may be deleted:
every recovery point is a complete index of its data (a synthetic full).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

RULE_NAMES = (
    "keep_within_days",
    "keep_last",
    "keep_daily",
    "keep_weekly",
    "keep_monthly",
    "keep_yearly",
)


@dataclass(frozen=True)
class RetentionRules:
    """A retention policy's rules; None or 0 means the rule is unused."""

    keep_within_days: int | None = None
    keep_last: int | None = None
    keep_daily: int | None = None
    keep_weekly: int | None = None
    keep_monthly: int | None = None
    keep_yearly: int | None = None

    def __post_init__(self) -> None:
        for name in RULE_NAMES:
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be a whole number >= 0, not {value!r}")

    @classmethod
    def from_policy(cls, policy: Any) -> RetentionRules:
        """Read the rules of a catalog ``RetentionPolicy`` row (or any object with them)."""
        return cls(**{name: getattr(policy, name) for name in RULE_NAMES})

    @property
    def active(self) -> bool:
        """True when at least one rule is set."""
        return any(getattr(self, name) for name in RULE_NAMES)


@dataclass(frozen=True)
class PointInfo:
    """What retention needs to know about a recovery point."""

    id: str
    created_at: datetime  # aware
    legal_hold: bool = False


@dataclass
class RetentionDecision:
    """Keep or delete one point, and every rule that keeps it."""

    id: str
    created_at: datetime
    keep: bool
    reasons: list[str] = field(default_factory=list)


_Bucket = Callable[[datetime], tuple[Hashable, str]]

_PERIODS: tuple[tuple[str, str, _Bucket], ...] = (
    ("keep_daily", "daily", lambda t: (t.date(), f"{t:%Y-%m-%d}")),
    (
        "keep_weekly",
        "weekly",
        lambda t: (t.isocalendar()[:2], f"{t.isocalendar()[0]}-W{t.isocalendar()[1]:02d}"),
    ),
    ("keep_monthly", "monthly", lambda t: ((t.year, t.month), f"{t:%Y-%m}")),
    ("keep_yearly", "yearly", lambda t: (t.year, f"{t:%Y}")),
)


def plan_retention(
    points: Iterable[PointInfo],
    rules: RetentionRules,
    now: datetime,
    tz: tzinfo = UTC,
) -> list[RetentionDecision]:
    """Decide for every point of one chain (one job, asset and pool), newest first.

    ``tz`` is the zone whose calendar days, weeks, months and years the GFS rules
    count in.
    """
    if now.tzinfo is None:
        raise ValueError("now must be time-zone aware")
    ordered = sorted(points, key=lambda p: (p.created_at, p.id), reverse=True)
    decisions = [RetentionDecision(p.id, p.created_at, keep=False) for p in ordered]
    if not ordered:
        return decisions
    if not rules.active:
        for d in decisions:
            d.keep = True
            d.reasons.append("no retention rules")
        return decisions

    decisions[0].reasons.append("newest")
    for point, d in zip(ordered, decisions, strict=True):
        if point.legal_hold:
            d.reasons.append("legal hold")
    if rules.keep_within_days:
        limit = now - timedelta(days=rules.keep_within_days)
        for d in decisions:
            if d.created_at >= limit:
                d.reasons.append(f"within {rules.keep_within_days} days")
    if rules.keep_last:
        for i, d in enumerate(decisions[: rules.keep_last]):
            d.reasons.append(f"last {i + 1} of {rules.keep_last}")
    for rule, label, bucket_of in _PERIODS:
        wanted = getattr(rules, rule)
        if not wanted:
            continue
        seen: set[Hashable] = set()
        for d in decisions:  # newest first: the first point of a bucket is its newest
            key, text = bucket_of(d.created_at.astimezone(tz))
            if key in seen:
                continue
            seen.add(key)
            d.reasons.append(f"{label} {text}")
            if len(seen) == wanted:
                break
    for d in decisions:
        d.keep = bool(d.reasons)
    return decisions
