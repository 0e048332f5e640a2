"""What follows a run's end: a retry when the job asks for one, and the notification.

Called once a run's final state is recorded, by the backup and copy runs
(``backup.finish_outcome``) and by crash recovery for runs whose worker died.
Neither a retry nor a notification can change how the run ended.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from ..catalog.models import Run, RunState
from . import notifications, retries, runs
from .notifications import Notification

if TYPE_CHECKING:
    from .context import EngineContext

log = logging.getLogger(__name__)

#: The notification event of each final state (a canceled run was stopped on purpose).
EVENT_OF_STATE = {
    RunState.FAILED: "failure",
    RunState.WARNING: "warning",
    RunState.SUCCEEDED: "success",
}


def run_finished(env: EngineContext, run_id: int) -> retries.Retry | None:
    """Queue the retry of a failed run (when its job asks for one) and notify the targets
    that want the run's outcome. Returns the retry; never raises for a delivery."""
    retry = None
    try:
        retry = retries.queue_retry(env.catalog, run_id)
    except Exception:
        log.exception("run %s: queuing its retry failed", run_id)
    try:
        note = run_notification(env, run_id, retry)
        if note is not None:
            failed = [d for d in notifications.notify(env, note) if d.error]
            for d in failed:
                runs.log_line(
                    env.catalog, run_id, f"notification to {d.target} failed: {d.error}", "WARNING"
                )
    except Exception:
        log.exception("run %s: notifying its end failed", run_id)
    return retry


def run_notification(
    env: EngineContext, run_id: int, retry: retries.Retry | None = None
) -> Notification | None:
    """The notification of a finished run; None for a canceled one."""
    with env.catalog.session() as s:
        run = s.scalar(select(Run).options(selectinload(Run.job)).where(Run.id == run_id))
        if run is None:
            raise KeyError(f"no run {run_id}")
    event = EVENT_OF_STATE.get(run.state)
    if event is None:
        return None
    job = run.job.name if run.job else "(deleted job)"
    what = run.kind if run.kind != "backup" else "backup"
    subject = f"[tapir] {what} of job {job} {run.state} (run {run.id})"
    lines = [
        f"Job:      {job}",
        f"Run:      {run.id} ({run.kind}, level {run.level}, trigger {run.trigger}, "
        f"attempt {run.attempt})",
        f"State:    {run.state}",
        f"Started:  {run.started_at:%Y-%m-%d %H:%M:%S} UTC" if run.started_at else "Started:  -",
        f"Finished: {run.finished_at:%Y-%m-%d %H:%M:%S} UTC" if run.finished_at else "Finished: -",
        f"Data:     {run.bytes_done} bytes, {run.bytes_written} bytes new",
    ]
    if run.error:
        lines.append(f"Error:    {run.error}")
    if retry is not None:
        lines.append(
            f"Retry:    run {retry.run_id} (attempt {retry.attempt}) from "
            f"{retry.not_before:%Y-%m-%d %H:%M:%S} UTC"
        )
    lines.append("")
    lines.append(f"Log: tapir run show {run.id} --log")
    details = {
        "run": run.id,
        "job": run.job.name if run.job else None,
        "kind": run.kind,
        "state": run.state,
        "level": run.level,
        "trigger": run.trigger,
        "attempt": run.attempt,
        "error": run.error,
        "retry_of": run.retry_of_id,
        "retry": retry.run_id if retry else None,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "bytes_done": run.bytes_done,
        "bytes_written": run.bytes_written,
    }
    return Notification(event, subject, "\n".join(lines) + "\n", details)


def request_operator(
    env: EngineContext, plugin: str, run_id: int | None, subject: str, body: str
) -> None:
    """A plugin needs a person (``PluginContext.request_operator``): say so in the run's
    log and notify the targets that want ``operator-request``. Never raises."""
    subject = " ".join(str(subject).split()) or "an operator is needed"
    try:
        if run_id is not None:
            runs.log_line(env.catalog, run_id, f"operator needed: {subject}", "WARNING")
        details = {"plugin": plugin, "run": run_id}
        note = Notification(
            "operator-request", f"[tapir] operator needed: {subject}", str(body), details
        )
        for d in notifications.notify(env, note):
            if d.error and run_id is not None:
                runs.log_line(
                    env.catalog, run_id, f"notification to {d.target} failed: {d.error}", "WARNING"
                )
    except Exception:
        log.exception("plugin %s: asking for an operator failed", plugin)
