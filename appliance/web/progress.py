"""A run as the panel shows it: the CLI's record plus rate and time left."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ..catalog.models import RunState
from ..cli.records import run_duration, run_listing, run_percent, run_record
from ..engine.service import Appliance


def with_rate(record: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """Add ``rate`` (bytes/s since the start) and ``eta`` (seconds left, when known)."""
    now = now or datetime.now(UTC)
    started = record.get("started_at")
    finished = record.get("finished_at")
    rate = eta = None
    if started is not None:
        elapsed = ((finished or now) - started).total_seconds()
        done = record.get("bytes_done") or 0
        if elapsed > 0 and done:
            rate = done / elapsed
        total = record.get("bytes_total")
        if rate and total and record.get("state") == RunState.RUNNING:
            eta = max(0.0, (total - done) / rate)
    record["rate"] = rate
    record["eta"] = eta
    return record


def runs(app: Appliance, limit: int = 50, job: str | None = None) -> list[dict[str, Any]]:
    """Recent runs, newest first, with progress, rate and time left."""
    now = datetime.now(UTC)
    return [with_rate(r, now) for r in run_listing(app, limit=limit, job=job)]


def run(app: Appliance, run_id: int) -> dict[str, Any]:
    """One run with progress and its log; KeyError when unknown."""
    row = app.run(run_id)
    now = datetime.now(UTC)
    record = run_record(row)
    # Percent and duration computed as in every listing.
    record["percent"] = run_percent(row)
    record["duration"] = run_duration(row, now)
    with_rate(record, now)
    record["log"] = [
        {"at": at, "level": level, "message": message} for at, level, message in app.run_log(run_id)
    ]
    return record
