"""The run queue in the catalog: queue, claim, heartbeat, cancel, finish, crash recovery.

Every function opens its own short transaction, so workers on several appliances
can share one catalog. A claim never hands one run to two workers: PostgreSQL
locks candidate rows with ``FOR UPDATE SKIP LOCKED``; SQLite serialises writers
(the catalog opens every transaction with ``BEGIN IMMEDIATE``) and the claim is
a conditional update checked by its row count on both.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from ..catalog.database import Catalog
from ..catalog.models import Job, Run, RunLogLine, RunState, utcnow
from . import limits

log = logging.getLogger(__name__)

#: A running worker refreshes its runs' heartbeat at least this often (seconds).
HEARTBEAT_INTERVAL = 5.0
#: A running run whose heartbeat is older than this belongs to a dead worker.
STALE_AFTER = timedelta(minutes=2)
#: How many queued runs one claim looks at (runs held back by a limit are passed over).
_CLAIM_BATCH = 50
_LEVELS = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
}


def worker_name(suffix: str | None = None) -> str:
    """``host:pid`` (with ``#suffix`` for one thread of a process), stored in ``runs.worker``."""
    name = f"{socket.gethostname()}:{os.getpid()}"
    return f"{name}#{suffix}" if suffix else name


def parse_worker(worker: str) -> tuple[str, int | None]:
    """The host and pid named in a worker string (pid None when it is not ours to parse)."""
    host, _, rest = worker.rpartition(":")
    pid_text = rest.split("#", 1)[0]
    if not host or not pid_text.isdigit():
        return worker, None
    return host, int(pid_text)


def pid_alive(pid: int) -> bool:
    """True when process ``pid`` exists on this host and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            # The state follows the parenthesised command name, which may hold spaces.
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return True


def queue_run(
    catalog: Catalog,
    job_id: int | None,
    *,
    kind: str = "backup",
    level: str = "auto",
    trigger: str = "manual",
    params: dict[str, Any] | None = None,
    not_before: datetime | None = None,
    attempt: int = 1,
    retry_of: int | None = None,
) -> int:
    """Add a queued run; returns its id. ``retry_of`` links a retry to the failed run."""
    with catalog.session() as s:
        run = Run(
            job_id=job_id,
            kind=kind,
            level=level,
            trigger=trigger,
            params=params or {},
            not_before=not_before,
            attempt=attempt,
            retry_of_id=retry_of,
            state=RunState.QUEUED,
            queued_at=utcnow(),
        )
        s.add(run)
        s.flush()
        return run.id


def claim_next_run(catalog: Catalog, worker: str, now: datetime | None = None) -> int | None:
    """Move the oldest runnable queued run to 'running' for ``worker``; its id or None.

    Runnable: ``not_before`` has passed and neither its job nor its pool is at its
    ``max_concurrent_runs`` (see :mod:`.limits`). A run held back says so once in its
    log ("waiting for ...") and in ``Run.waiting_for``, and starts when a slot frees.
    """
    now = now or utcnow()
    pg = catalog.is_postgresql
    with catalog.session() as s:
        q = (
            select(Run.id, Run.job_id, Job.pool_id, Run.waiting_for)
            .outerjoin(Job, Run.job_id == Job.id)
            .where(Run.state == RunState.QUEUED)
            .where((Run.not_before.is_(None)) | (Run.not_before <= now))
            .order_by(Run.queued_at, Run.id)
            .limit(_CLAIM_BATCH)
        )
        if pg:
            q = q.with_for_update(skip_locked=True, of=Run)
        held: dict[tuple[int | None, int | None], limits.Verdict] = {}
        for run_id, job_id, pool_id, was_waiting in s.execute(q).all():
            key = (job_id, pool_id)
            verdict = held.get(key) or limits.check(s, job_id, pool_id, lock=pg)
            if not verdict.runnable:
                held[key] = verdict
                if verdict.waiting_for and verdict.waiting_for != was_waiting:
                    _set_waiting(s, run_id, verdict.waiting_for, now)
                continue
            result = s.execute(
                update(Run)
                .where(Run.id == run_id, Run.state == RunState.QUEUED)
                .values(
                    state=RunState.RUNNING,
                    worker=worker,
                    started_at=now,
                    heartbeat_at=now,
                    waiting_for=None,
                )
                .execution_options(synchronize_session=False)
            )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                return run_id
        return None


def _set_waiting(s: Any, run_id: int, reason: str, now: datetime) -> None:
    # Logged when the reason changes, not at every poll, so the log stays readable.
    s.execute(
        update(Run)
        .where(Run.id == run_id, Run.state == RunState.QUEUED)
        .values(waiting_for=reason)
        .execution_options(synchronize_session=False)
    )
    s.add(RunLogLine(run_id=run_id, level="INFO", message=reason, at=now))
    log.info("run %s: %s", run_id, reason)


@dataclass
class HeartbeatResult:
    """What a heartbeat learned: is the run still ours, was it canceled."""

    still_running: bool
    cancel_requested: bool


def heartbeat(
    catalog: Catalog, run_id: int, worker: str, now: datetime | None = None, **counters: Any
) -> HeartbeatResult:
    """Refresh ``heartbeat_at`` (and progress counters) of a run this worker holds."""
    now = now or utcnow()
    with catalog.session() as s:
        result = s.execute(
            update(Run)
            .where(Run.id == run_id, Run.state == RunState.RUNNING, Run.worker == worker)
            .values(heartbeat_at=now, **counters)
            .execution_options(synchronize_session=False)
        )
        cancel = s.scalar(select(Run.cancel_requested).where(Run.id == run_id))
        return HeartbeatResult(result.rowcount == 1, bool(cancel))  # type: ignore[attr-defined]


def is_cancel_requested(catalog: Catalog, run_id: int) -> bool:
    """True once an operator asked to cancel the run."""
    with catalog.session() as s:
        return bool(s.scalar(select(Run.cancel_requested).where(Run.id == run_id)))


def request_cancel(catalog: Catalog, run_id: int) -> str:
    """Cancel a run: a queued run is canceled at once, a running one at its next check.

    Returns the run's state afterwards; raises KeyError for an unknown run and
    ValueError for a finished one.
    """
    with catalog.session() as s:
        run = s.get(Run, run_id)
        if run is None:
            raise KeyError(f"no run {run_id}")
        if run.state in RunState.FINISHED:
            raise ValueError(f"run {run_id} already finished ({run.state})")
        run.cancel_requested = True
        if run.state == RunState.QUEUED:
            run.state = RunState.CANCELED
            run.finished_at = utcnow()
            run.error = "canceled before it started"
        return run.state


def finish_run(
    catalog: Catalog,
    run_id: int,
    state: str,
    error: str | None = None,
    **counters: Any,
) -> bool:
    """Record a run's end; False when it was no longer running (crash recovery took it)."""
    if state not in RunState.FINISHED:
        raise ValueError(f"{state!r} is not a final run state")
    with catalog.session() as s:
        result = s.execute(
            update(Run)
            .where(Run.id == run_id, Run.state == RunState.RUNNING)
            .values(state=state, error=error, finished_at=utcnow(), **counters)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1  # type: ignore[attr-defined]


def log_line(catalog: Catalog, run_id: int, message: str, level: str = "INFO") -> None:
    """Append a line to the run's log (shown by `tapir run show --log`)."""
    log.log(_LEVELS.get(level, logging.INFO), "run %s: %s", run_id, message)
    with catalog.session() as s:
        s.add(RunLogLine(run_id=run_id, level=level, message=message, at=utcnow()))


def recover_stale_runs(
    catalog: Catalog, now: datetime | None = None, host: str | None = None
) -> list[int]:
    """Mark as failed every running run whose worker is dead; returns their ids.

    Dead: the worker's process on this host is gone, or (any host) its heartbeat
    is older than :data:`STALE_AFTER`. Nothing it wrote became a recovery point (the
    row is inserted only after the manifest); ``gc`` reclaims its chunks.
    """
    now = now or utcnow()
    host = host or socket.gethostname()
    stale: list[tuple[int, str]] = []
    with catalog.session() as s:
        for run in s.scalars(select(Run).where(Run.state == RunState.RUNNING)):
            whost, pid = parse_worker(run.worker or "")
            last = run.heartbeat_at or run.started_at or run.queued_at
            if whost == host and pid is not None and not pid_alive(pid):
                stale.append((run.id, f"worker died (process {pid} on {host} is gone)"))
            elif last is not None and now - last > STALE_AFTER:
                stale.append(
                    (run.id, f"worker died (no heartbeat from {run.worker} since {last:%F %T} UTC)")
                )
    recovered: list[int] = []
    for run_id, reason in stale:
        with catalog.session() as s:
            result = s.execute(
                update(Run)
                .where(Run.id == run_id, Run.state == RunState.RUNNING)
                .values(state=RunState.FAILED, error=reason, finished_at=now)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                continue  # it finished meanwhile
            s.add(RunLogLine(run_id=run_id, level="ERROR", message=reason, at=now))
        log.warning("run %s: %s", run_id, reason)
        recovered.append(run_id)
    return recovered
