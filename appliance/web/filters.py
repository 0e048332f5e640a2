"""Jinja filters: the command line's formatting, so both show the same numbers."""

from __future__ import annotations

from flask import Flask

from ..cli.output import format_bytes, format_duration, format_ratio, format_time


def install(app: Flask) -> None:
    """Register the filters on ``app``."""
    app.jinja_env.filters.update(
        bytes=format_bytes,
        duration=format_duration,
        ratio=format_ratio,
        time=format_time,
    )
