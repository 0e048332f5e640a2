"""Retrying failed runs: the back-off, and the retry run linked to the failed one.

A job with ``max_retries`` N gets up to N retries of a failed run. Retry k waits
``retry_delay * 2**(k-1)`` seconds after the failure (5 min, 10 min, 20 min... by
default), never longer than ``retry_delay_max``. Only failed runs are retried: a
canceled run was stopped on purpose, and a run that ended with warnings made its
recovery points.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ..catalog.database import Catalog
from ..catalog.models import Job, Run, RunState, utcnow
from . import runs

#: Back-off of retry 1 when a job does not say (seconds).
DEFAULT_DELAY = 300
#: Longest back-off when a job does not say (seconds).
DEFAULT_DELAY_MAX = 4 * 3600


def backoff(retry: int, delay: int, delay_max: int) -> timedelta:
    """How long retry number ``retry`` (1, 2, ...) waits after the failure."""
    if retry < 1:
        raise ValueError("retries are numbered from 1")
    if delay < 0 or delay_max < 0:
        raise ValueError("a retry delay cannot be negative")
    # 2**retry grows without bound; the cap applies long before it matters.
    seconds = delay * 2 ** min(retry - 1, 32)
    return timedelta(seconds=min(seconds, delay_max))


@dataclass(frozen=True)
class Retry:
    """A queued retry: its run id, its attempt number and when it may start."""

    run_id: int
    attempt: int
    not_before: datetime


def queue_retry(catalog: Catalog, run_id: int, now: datetime | None = None) -> Retry | None:
    """Queue a retry of run ``run_id`` when it failed and its job asks for one.

    The retry is a new run (trigger ``retry``, ``retry_of`` the failed run, the
    same kind, level and parameters); both runs' logs say so. None when nothing
    is retried: the run did not fail, it has no job, or its retries are used up.
    """
    now = now or utcnow()
    with catalog.session() as s:
        run = s.get(Run, run_id)
        if run is None:
            raise KeyError(f"no run {run_id}")
        job = s.get(Job, run.job_id) if run.job_id is not None else None
        if run.state != RunState.FAILED or job is None or run.attempt > job.max_retries:
            return None
        if run.kind == "restore":
            # An operator's restore is never repeated behind their back (and no worker
            # runs queued restores: they run where they were asked for).
            return None
        retry_no = run.attempt  # attempt 1 failed: this is retry 1
        wait = backoff(retry_no, job.retry_delay, job.retry_delay_max)
        kind, level, params, attempt = run.kind, run.level, dict(run.params), run.attempt + 1
        job_id, max_retries = job.id, job.max_retries
    not_before = now + wait
    retry_id = runs.queue_run(
        catalog,
        job_id,
        kind=kind,
        level=level,
        trigger="retry",
        params={**params, "retry_of": run_id},
        not_before=not_before,
        attempt=attempt,
        retry_of=run_id,
    )
    when = f"{not_before:%Y-%m-%d %H:%M:%S} UTC"
    runs.log_line(
        catalog, run_id, f"retry {retry_no} of {max_retries} queued as run {retry_id}, from {when}"
    )
    runs.log_line(
        catalog,
        retry_id,
        f"retry {retry_no} of {max_retries} of failed run {run_id}; waits until {when}",
    )
    return Retry(retry_id, attempt, not_before)
