"""Concurrency limits per job and per pool: held-back runs say why, and start later."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from tapir.appliance.catalog.models import Job, Pool, RunState
from tapir.appliance.engine import runs
from tapir.appliance.engine.service import Appliance
from tapir.appliance.engine.worker import WorkerPool


def _job(app: Appliance, name: str, source: Path, pool: str = "default") -> None:
    app.create_job(name, "files", pool, options={"paths": [str(source)]})


def _waits(app: Appliance, run_id: int) -> list[str]:
    return [m for _, _, m in app.run_log(run_id) if m.startswith("waiting for")]


def test_one_run_of_a_job_at_a_time_by_default(app: Appliance, source: Path) -> None:
    _job(app, "j", source)
    first, second = app.queue_run("j"), app.queue_run("j")
    assert app.claim_next_run("w1") == first
    for _ in range(3):  # every poll passes it over; the log says so once
        assert app.claim_next_run("w2") is None
    assert _waits(app, second) == ["waiting for job j to finish its running run (limit 1)"]
    assert app.run(second).waiting_for == _waits(app, second)[0]

    assert runs.finish_run(app.catalog, first, RunState.SUCCEEDED)
    assert app.claim_next_run("w2") == second
    assert app.run(second).waiting_for is None


def test_a_job_may_allow_more_runs_at_once(app: Appliance, source: Path) -> None:
    _job(app, "j", source)
    app.set_job_limits("j", max_concurrent_runs=2)
    ids = [app.queue_run("j") for _ in range(3)]
    assert [app.claim_next_run("w"), app.claim_next_run("w")] == ids[:2]
    assert app.claim_next_run("w") is None
    assert _waits(app, ids[2]) == ["waiting for job j to finish its running runs (limit 2)"]
    app.set_job_limits("j", max_concurrent_runs=0)  # no limit
    assert app.claim_next_run("w") == ids[2]


def test_a_pool_limit_holds_back_runs_of_other_jobs(
    app: Appliance, source: Path, tmp_path: Path
) -> None:
    app.create_pool("other", "disk", path=tmp_path / "other")
    for name, pool in (("a", "default"), ("b", "default"), ("c", "other")):
        _job(app, name, source, pool)
    app.set_pool_limit("default", 1)
    a, b, c = app.queue_run("a"), app.queue_run("b"), app.queue_run("c")
    assert app.claim_next_run("w") == a
    assert app.claim_next_run("w") == c  # another pool: not held back
    assert app.claim_next_run("w") is None
    assert _waits(app, b) == ["waiting for a free slot in pool default (1 concurrent run at most)"]
    runs.finish_run(app.catalog, a, RunState.FAILED, "test")
    assert app.claim_next_run("w") == b


def test_limits_refuse_bad_values_and_change_nothing(app: Appliance, source: Path) -> None:
    _job(app, "j", source)
    with pytest.raises(ValueError, match="max_concurrent_runs must be"):
        app.set_job_limits("j", max_concurrent_runs=-1)
    with pytest.raises(ValueError, match="below retry_delay"):
        app.set_job_limits("j", max_retries=3, retry_delay=600, retry_delay_max=60)
    with pytest.raises(KeyError, match="no job named 'nope'"):
        app.set_job_limits("nope", max_retries=1)
    with pytest.raises(ValueError):
        app.set_pool_limit("default", -2)
    with pytest.raises(KeyError, match="no pool named 'nope'"):
        app.set_pool_limit("nope", 1)
    with app.catalog.session() as s:
        job = s.scalars(select(Job).where(Job.name == "j")).one()
        assert (job.max_concurrent_runs, job.max_retries, job.retry_delay) == (1, 0, 300)
        assert (
            s.scalars(select(Pool).where(Pool.name == "default")).one().max_concurrent_runs is None
        )


def test_workers_run_one_job_sequentially_and_two_jobs_side_by_side(
    lite: Appliance, source: Path
) -> None:
    _job(lite, "j", source)
    _job(lite, "k", source)
    ids = [lite.queue_run("j"), lite.queue_run("j"), lite.queue_run("k")]
    pool = WorkerPool(lite, workers=2, scheduler=False, poll_interval=0.05)
    pool.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if all(lite.run(i).state in RunState.FINISHED for i in ids):
                break
            time.sleep(0.05)
    finally:
        pool.stop(timeout=60)
    first, second, other = (lite.run(i) for i in ids)
    assert [r.state for r in (first, second, other)] == ["succeeded"] * 3
    # The job's second run started only once its first had ended.
    assert second.started_at >= first.finished_at


def test_racing_claimers_never_exceed_a_limit(app: Appliance, source: Path) -> None:
    _job(app, "j", source)
    app.set_job_limits("j", max_concurrent_runs=2)
    queued = [app.queue_run("j") for _ in range(12)]
    claimed: list[int] = []
    lock = threading.Lock()

    def claim(worker: str) -> None:
        for _ in range(5):
            run_id = runs.claim_next_run(app.catalog, worker)
            if run_id is not None:
                with lock:
                    claimed.append(run_id)

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(claimed) == 2 and set(claimed) == set(queued[:2])
    states = [app.run(i).state for i in queued]
    assert states.count(RunState.RUNNING) == 2 and states.count(RunState.QUEUED) == 10
