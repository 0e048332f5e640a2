"""Retries with back-off: linked retry runs, doubling capped delays, never for canceled runs."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from tapir.appliance.catalog.models import Run, RunState, utcnow
from tapir.appliance.engine import retries, runs
from tapir.appliance.engine.service import Appliance


def test_backoff_doubles_and_is_capped() -> None:
    minutes = [retries.backoff(n, 300, 3600) / timedelta(minutes=1) for n in range(1, 7)]
    assert minutes == [5, 10, 20, 40, 60, 60]
    assert retries.backoff(200, 300, 3600) == timedelta(hours=1)  # no overflow
    with pytest.raises(ValueError):
        retries.backoff(0, 300, 3600)


def _failing_job(app: Appliance, tmp_path: Path, retries_: int) -> None:
    # A real failure: the files plugin cannot read a path that is not there.
    app.create_job("flaky", "files", "default", options={"paths": [str(tmp_path / "missing")]})
    app.set_job_limits("flaky", max_retries=retries_, retry_delay=300, retry_delay_max=500)


def test_a_failed_run_is_retried_with_back_off_until_retries_are_used_up(
    app: Appliance, tmp_path: Path
) -> None:
    _failing_job(app, tmp_path, 2)
    first = app.run_job("flaky")
    assert first.state == RunState.FAILED
    (retry1,) = [r for r in app.runs(job="flaky") if r.id != first.id]
    assert (retry1.state, retry1.trigger, retry1.attempt) == ("queued", "retry", 2)
    assert retry1.retry_of_id == first.id and retry1.params["retry_of"] == first.id
    assert retry1.not_before - first.finished_at >= timedelta(seconds=300)
    assert any(f"queued as run {retry1.id}" in m for _, _, m in app.run_log(first.id))
    assert any(f"of failed run {first.id}" in m for _, _, m in app.run_log(retry1.id))

    # Not claimed before its back-off; claimed after it (a controllable clock).
    assert runs.claim_next_run(app.catalog, "w") is None
    later = retry1.not_before + timedelta(seconds=1)
    assert runs.claim_next_run(app.catalog, "w", now=later) == retry1.id
    assert app.execute_run(retry1.id, worker="w").state == RunState.FAILED

    retry2 = app.runs(limit=1, job="flaky")[0]
    assert (retry2.attempt, retry2.retry_of_id) == (3, retry1.id)
    # The second back-off is twice the first, capped at 500 s.
    finished = app.run(retry1.id).finished_at
    assert timedelta(seconds=500) <= retry2.not_before - finished < timedelta(seconds=600)
    later = retry2.not_before + timedelta(seconds=1)
    assert runs.claim_next_run(app.catalog, "w", now=later) == retry2.id
    assert app.execute_run(retry2.id, worker="w").state == RunState.FAILED
    # Two retries were allowed: the third failure stays failed.
    assert [r.id for r in app.runs(job="flaky")] == [retry2.id, retry1.id, first.id]


def test_a_job_without_retries_and_canceled_runs_are_never_retried(
    lite: Appliance, tmp_path: Path, source: Path
) -> None:
    _failing_job(lite, tmp_path, 0)
    assert lite.run_job("flaky").state == RunState.FAILED
    assert len(lite.runs(job="flaky")) == 1

    lite.create_job("steady", "files", "default", options={"paths": [str(source)]})
    lite.set_job_limits("steady", max_retries=3)
    queued = lite.queue_run("steady")
    lite.cancel_run(queued)
    assert retries.queue_retry(lite.catalog, queued) is None
    # A running run canceled by the operator ends canceled and is not retried either.
    running = lite.queue_run("steady")
    assert lite.claim_next_run("w") == running
    runs.request_cancel(lite.catalog, running)
    assert lite.execute_run(running, worker="w").state == RunState.CANCELED
    assert {r.state for r in lite.runs(job="steady")} == {RunState.CANCELED}


def test_a_run_whose_worker_died_is_retried(lite: Appliance, source: Path) -> None:
    lite.create_job("j", "files", "default", options={"paths": [str(source)]})
    lite.set_job_limits("j", max_retries=1)
    run_id = lite.queue_run("j")
    # Claimed by a real process that is then gone: crash recovery fails the run.
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead = f"{os.uname().nodename}:{child.stdout.strip()}"
    assert runs.claim_next_run(lite.catalog, dead) == run_id
    assert lite.recover_stale_runs() == [run_id]
    retry = lite.runs(limit=1, job="j")[0]
    assert (retry.trigger, retry.retry_of_id, retry.state) == ("retry", run_id, "queued")
    with lite.catalog.session() as s:
        assert s.get(Run, run_id).state == RunState.FAILED
    assert retry.not_before > utcnow()
