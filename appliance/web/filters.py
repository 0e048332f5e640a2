"""Jinja filters: the command line's formatting, so both show the same numbers."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Flask

from ..cli.output import format_bytes, format_duration, format_ratio, format_time


def in_zone(value: datetime | None, zone: str) -> str:
    """A time as the wall clock of ``zone`` shows it (a schedule's own zone), zone named."""
    if value is None:
        return "-"
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return format_time(value)
    return f"{value.astimezone(tz):%a %Y-%m-%d %H:%M} {zone}"


def cron_text(expr: str) -> str:
    """A cron expression in words ("At 02:00 AM, Monday through Friday")."""
    from cron_descriptor import get_description

    try:
        return get_description(expr)
    except Exception:  # a description is a courtesy: never fail a page for it
        return expr


def install(app: Flask) -> None:
    """Register the filters on ``app``."""
    app.jinja_env.filters.update(
        bytes=format_bytes,
        duration=format_duration,
        ratio=format_ratio,
        time=format_time,
        in_zone=in_zone,
        cron_text=cron_text,
    )
