"""Retention decisions: property tests and hand-written GFS cases."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tapir.appliance.engine.retention import PointInfo, RetentionRules, plan_retention

NOW = datetime(2027, 1, 10, 12, 0, tzinfo=UTC)


def _points(*stamps: str, held: tuple[int, ...] = ()) -> list[PointInfo]:
    return [
        PointInfo(f"p{i}", datetime.fromisoformat(s).replace(tzinfo=UTC), i in held)
        for i, s in enumerate(stamps)
    ]


def _kept(decisions) -> set[str]:
    return {d.id for d in decisions if d.keep}


points_strategy = st.lists(
    st.tuples(
        st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2027, 1, 10)),
        st.booleans(),
    ),
    max_size=60,
).map(
    lambda xs: [
        PointInfo(f"p{i}", t.replace(tzinfo=UTC), hold and i % 5 == 0)
        for i, (t, hold) in enumerate(xs)
    ]
)
small = st.one_of(st.none(), st.integers(0, 8))
rules_strategy = st.builds(
    RetentionRules,
    keep_within_days=small,
    keep_last=small,
    keep_daily=small,
    keep_weekly=small,
    keep_monthly=small,
    keep_yearly=small,
)


@settings(max_examples=300, deadline=None)
@given(points_strategy, rules_strategy)
def test_properties(points: list[PointInfo], rules: RetentionRules) -> None:
    decisions = plan_retention(points, rules, NOW)
    by_id = {d.id: d for d in decisions}
    assert set(by_id) == {p.id for p in points}
    for p in points:
        if p.legal_hold:
            assert by_id[p.id].keep, "a point under legal hold was deleted"
    if points:
        # Never everything: the newest point of the chain always stays.
        newest = max(points, key=lambda p: (p.created_at, p.id))
        assert by_id[newest.id].keep
    if not rules.active:
        assert all(d.keep for d in decisions)
    for d in decisions:
        assert d.keep == bool(d.reasons)


@settings(max_examples=200, deadline=None)
@given(points_strategy, st.integers(1, 10))
def test_keep_last_alone_keeps_exactly_the_newest_n(points: list[PointInfo], n: int) -> None:
    points = [PointInfo(p.id, p.created_at) for p in points]  # no holds
    kept = _kept(plan_retention(points, RetentionRules(keep_last=n), NOW))
    newest = sorted(points, key=lambda p: (p.created_at, p.id), reverse=True)[:n]
    assert kept == {p.id for p in newest}


@settings(max_examples=200, deadline=None)
@given(points_strategy, st.integers(1, 6))
def test_monthly_keeps_the_newest_point_of_each_recent_month(
    points: list[PointInfo], n: int
) -> None:
    points = [PointInfo(p.id, p.created_at) for p in points]
    kept = _kept(plan_retention(points, RetentionRules(keep_monthly=n), NOW))
    months = sorted({(p.created_at.year, p.created_at.month) for p in points}, reverse=True)[:n]
    expected = {
        max(
            (p for p in points if (p.created_at.year, p.created_at.month) == m),
            key=lambda p: (p.created_at, p.id),
        ).id
        for m in months
    }
    assert kept == expected


def test_gfs_across_month_and_year_boundaries() -> None:
    points = _points(
        "2025-11-30T23:00",  # p0 newest of Nov 2025
        "2025-11-02T10:00",  # p1
        "2025-12-31T22:00",  # p2 newest of Dec 2025 and of 2025
        "2025-12-31T08:00",  # p3 same day as p2, older
        "2026-01-01T01:00",  # p4 newest of Jan 2026, ISO week 2026-W01
        "2026-01-04T23:59",  # p5 Sunday: still ISO week 2026-W01, newest of it
        "2026-01-05T00:01",  # p6 Monday: ISO week 2026-W02 (newest point overall)
    )
    d = {x.id: x for x in plan_retention(points, RetentionRules(keep_monthly=3), NOW)}
    assert _kept(d.values()) == {"p6", "p2", "p0"}
    assert d["p2"].reasons == ["monthly 2025-12"]
    assert "newest" in d["p6"].reasons and "monthly 2026-01" in d["p6"].reasons

    yearly = plan_retention(points, RetentionRules(keep_yearly=2), NOW)
    assert _kept(yearly) == {"p6", "p2"}

    weekly = plan_retention(points, RetentionRules(keep_weekly=2), NOW)
    # 2026-W02 -> p6, 2026-W01 -> p5 (p4 is older in the same ISO week).
    assert _kept(weekly) == {"p6", "p5"}

    daily = plan_retention(points, RetentionRules(keep_daily=4), NOW)
    assert _kept(daily) == {"p6", "p5", "p4", "p2"}


def test_days_without_points_do_not_count() -> None:
    # "The last N days that have points": a gap of a month does not empty keep_daily.
    points = _points("2026-12-01T10:00", "2026-12-01T09:00", "2026-11-01T10:00", "2026-10-01T10:00")
    assert _kept(plan_retention(points, RetentionRules(keep_daily=2), NOW)) == {"p0", "p2"}


def test_keep_within_and_legal_hold_and_reasons() -> None:
    points = _points(
        "2027-01-09T12:00",
        "2027-01-03T12:01",
        "2027-01-03T11:59",
        "2020-05-05T00:00",
        held=(3,),
    )
    d = {x.id: x for x in plan_retention(points, RetentionRules(keep_within_days=7), NOW)}
    assert d["p0"].keep and d["p1"].keep
    assert not d["p2"].keep and d["p2"].reasons == []
    assert d["p3"].keep and d["p3"].reasons == ["legal hold"]
    assert d["p1"].reasons == ["within 7 days"]


def test_no_rules_keep_everything_and_bad_rules_are_refused() -> None:
    points = _points("2020-01-01T00:00", "2021-01-01T00:00")
    assert all(d.keep for d in plan_retention(points, RetentionRules(), NOW))
    assert plan_retention([], RetentionRules(keep_last=1), NOW) == []
    with pytest.raises(ValueError, match="keep_last"):
        RetentionRules(keep_last=-1)
    with pytest.raises(ValueError, match="aware"):
        plan_retention(points, RetentionRules(keep_last=1), datetime(2027, 1, 1))


def test_daily_buckets_follow_the_given_time_zone() -> None:
    from zoneinfo import ZoneInfo

    # 23:30 UTC on Dec 31 is already Jan 1 in Berlin: two points, one Berlin day.
    points = _points("2026-12-31T23:30", "2027-01-01T08:00")
    utc = plan_retention(points, RetentionRules(keep_daily=2), NOW)
    berlin = plan_retention(points, RetentionRules(keep_daily=2), NOW, ZoneInfo("Europe/Berlin"))
    assert _kept(utc) == {"p0", "p1"}
    assert _kept(berlin) == {"p1"}
