"""A pool's usage over time as an inline SVG line chart, drawn on the server.

No chart library and no script: the panel must work offline, and a polyline of a few
thousand hourly samples is all the chart needs. Two lines: bytes stored (``used``)
and logical bytes protected; the gap between them is what deduplication and
compression save.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..cli.output import format_bytes, format_time

WIDTH = 600
HEIGHT = 160
MARGIN = 4


@dataclass(frozen=True)
class Chart:
    """What the template draws: SVG polyline points and the axis labels."""

    used: str
    logical: str
    top: str
    first: str
    last: str
    count: int
    width: int = WIDTH
    height: int = HEIGHT


def _x(at: datetime, start: datetime, span: float) -> float:
    if span <= 0:
        return WIDTH / 2
    return MARGIN + (at - start).total_seconds() / span * (WIDTH - 2 * MARGIN)


def _y(value: int, top: int) -> float:
    return HEIGHT - MARGIN - (value / top) * (HEIGHT - 2 * MARGIN)


def chart(samples: list[dict[str, Any]]) -> Chart | None:
    """The chart of samples (oldest first, as ``pool_usage_history`` gives them); None
    when there is nothing to draw yet."""
    if not samples:
        return None
    start, end = samples[0]["at"], samples[-1]["at"]
    span = (end - start).total_seconds()
    top = max(max(s["used"], s["logical"]) for s in samples) or 1

    def line(key: str) -> str:
        return " ".join(f"{_x(s['at'], start, span):.1f},{_y(s[key], top):.1f}" for s in samples)

    return Chart(
        used=line("used"),
        logical=line("logical"),
        top=format_bytes(top),
        first=format_time(start),
        last=format_time(end),
        count=len(samples),
    )
