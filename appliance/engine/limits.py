"""Concurrency limits: may a queued run start now, and if not, what is it waiting for.

Two limits hold a run back: its pool's ``max_concurrent_runs`` (how many runs may
write into one medium at once) and its job's (one run of a job at a time unless the
operator allows more). The answer is a sentence for the run's log, so an operator
sees why a run stays queued.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..catalog.models import Job, Pool, Run, RunState


@dataclass(frozen=True)
class Verdict:
    """Whether a queued run may start; ``busy`` means another claimer holds a row we need."""

    runnable: bool
    waiting_for: str | None = None
    busy: bool = False


RUNNABLE = Verdict(True)
BUSY = Verdict(False, busy=True)


def _running(s: Session, *where: object) -> int:
    q = (
        select(func.count(Run.id))
        .join(Job, Run.job_id == Job.id)
        .where(Run.state == RunState.RUNNING, *where)
    )
    return int(s.scalar(q) or 0)


def _limit(s: Session, model: type[Job] | type[Pool], row_id: int, lock: bool) -> tuple[str, int]:
    """(name, limit) of a job or pool; limit 0 for none. ('', -1): gone or locked."""
    row = s.execute(select(model.name, model.max_concurrent_runs).where(model.id == row_id)).first()
    if row is None:
        return "", -1
    name, limit = row[0], int(row[1] or 0)
    if limit and lock:
        # Claimers of one limited job or pool take turns; a row another claimer holds is
        # passed over (SKIP LOCKED, never waited for), so claimers cannot deadlock.
        q = select(model.id).where(model.id == row_id).with_for_update(skip_locked=True)
        if s.execute(q).first() is None:
            return name, -1
    return name, limit


def check(s: Session, job_id: int | None, pool_id: int | None, *, lock: bool) -> Verdict:
    """May a queued run of ``job_id`` (writing to ``pool_id``) start now?

    ``lock`` (PostgreSQL) locks the rows of a limited job and pool for the rest of the
    claim's transaction, so two claimers never both take the last slot.
    """
    if job_id is not None:
        name, limit = _limit(s, Job, job_id, lock)
        if limit < 0:
            return BUSY if name else RUNNABLE  # a deleted job: the run fails when executed
        if limit and _running(s, Run.job_id == job_id) >= limit:
            runs = "run" if limit == 1 else "runs"
            return Verdict(
                False, f"waiting for job {name} to finish its running {runs} (limit {limit})"
            )
    if pool_id is not None:
        name, limit = _limit(s, Pool, pool_id, lock)
        if limit < 0:
            return BUSY
        if limit and _running(s, Job.pool_id == pool_id) >= limit:
            plural = "" if limit == 1 else "s"
            return Verdict(
                False,
                f"waiting for a free slot in pool {name} ({limit} concurrent run{plural} at most)",
            )
    return RUNNABLE
