"""The run queue: claims under concurrency, limits, cancel, finish and crash recovery."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from tapir.appliance.catalog.database import Catalog
from tapir.appliance.catalog.models import (
    Job,
    Pool,
    RecoveryPoint,
    Run,
    RunLogLine,
    RunState,
    utcnow,
)
from tapir.appliance.config import Settings
from tapir.appliance.engine import runs
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_manager import load_plugins

from .fakes import FakePlugins


def _pool_and_job(catalog: Catalog, name: str = "p", limit: int | None = None) -> int:
    with catalog.session() as s:
        pool = Pool(name=name, media="memdisk", options={}, max_concurrent_runs=limit)
        s.add(pool)
        s.flush()
        # No per-job limit: these tests are about claims and pool limits.
        job = Job(name=f"job-{name}", plugin="fakefiles", pool_id=pool.id, max_concurrent_runs=0)
        s.add(job)
        s.flush()
        return job.id


def _claim_all(catalog: Catalog, worker: str, out: list[int]) -> None:
    while (run_id := runs.claim_next_run(catalog, worker)) is not None:
        out.append(run_id)


def test_threads_never_claim_the_same_run(catalog: Catalog) -> None:
    job = _pool_and_job(catalog)
    queued = {runs.queue_run(catalog, job) for _ in range(60)}
    results: list[list[int]] = [[] for _ in range(6)]
    threads = [
        threading.Thread(target=_claim_all, args=(catalog, f"w#{i}", results[i])) for i in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    claimed = [r for rs in results for r in rs]
    assert sorted(claimed) == sorted(queued)  # every run once, none twice
    with catalog.session() as s:
        rows = s.scalars(select(Run)).all()
        assert all(r.state == RunState.RUNNING and r.worker and r.started_at for r in rows)
        owners = {r.id: r.worker for r in rows}
    for i, rs in enumerate(results):
        assert all(owners[r] == f"w#{i}" for r in rs)


_CHILD = """
import json, sys
from tapir.appliance.catalog.database import Catalog
from tapir.appliance.engine import runs
cat = Catalog(sys.argv[1])
got = []
print("ready", flush=True)
sys.stdin.readline()
while (r := runs.claim_next_run(cat, sys.argv[2])) is not None:
    got.append(r)
print(json.dumps(got), flush=True)
"""


def test_two_processes_never_claim_the_same_run(catalog: Catalog) -> None:
    job = _pool_and_job(catalog)
    queued = {runs.queue_run(catalog, job) for _ in range(80)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, catalog.url, f"proc{i}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    for p in procs:  # release both at once
        p.stdin.write("go\n")
        p.stdin.flush()
    claimed: list[list[int]] = []
    for p in procs:
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0
        claimed.append(json.loads(out.strip().splitlines()[-1]))
    assert not set(claimed[0]) & set(claimed[1])
    assert sorted(claimed[0] + claimed[1]) == sorted(queued)


def test_claim_order_not_before_and_pool_limit(catalog: Catalog) -> None:
    limited = _pool_and_job(catalog, "small", limit=1)
    free = _pool_and_job(catalog, "big")
    later = runs.queue_run(catalog, free, not_before=utcnow() + timedelta(hours=1))
    a = runs.queue_run(catalog, limited)
    b = runs.queue_run(catalog, limited)
    c = runs.queue_run(catalog, free)
    assert runs.claim_next_run(catalog, "w") == a
    # b waits for the small pool's only slot; c (another pool) goes ahead; `later` waits.
    assert runs.claim_next_run(catalog, "w") == c
    assert runs.claim_next_run(catalog, "w") is None
    assert runs.finish_run(catalog, a, RunState.SUCCEEDED)
    assert runs.claim_next_run(catalog, "w") == b
    assert runs.claim_next_run(catalog, "w", now=utcnow() + timedelta(hours=2)) == later


def test_cancel_finish_and_heartbeat(catalog: Catalog) -> None:
    job = _pool_and_job(catalog)
    queued = runs.queue_run(catalog, job)
    running = runs.queue_run(catalog, job)
    assert runs.request_cancel(catalog, queued) == RunState.CANCELED
    assert runs.claim_next_run(catalog, "w") == running  # a canceled run is never claimed
    assert runs.heartbeat(catalog, running, "w").cancel_requested is False
    assert runs.request_cancel(catalog, running) == RunState.RUNNING
    beat = runs.heartbeat(catalog, running, "w", bytes_done=10)
    assert beat.still_running and beat.cancel_requested
    assert not runs.heartbeat(catalog, running, "someone-else").still_running
    assert runs.finish_run(catalog, running, RunState.CANCELED, "canceled")
    assert not runs.finish_run(catalog, running, RunState.FAILED, "twice")
    with pytest.raises(ValueError, match="already finished"):
        runs.request_cancel(catalog, running)
    with pytest.raises(KeyError):
        runs.request_cancel(catalog, 9999)
    with pytest.raises(ValueError, match="final"):
        runs.finish_run(catalog, running, RunState.RUNNING)
    with catalog.session() as s:
        run = s.get(Run, running)
        assert (run.state, run.error, run.bytes_done) == ("canceled", "canceled", 10)


def test_recover_stale_runs(catalog: Catalog) -> None:
    job = _pool_and_job(catalog)
    host = socket.gethostname()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    ids = [runs.queue_run(catalog, job) for _ in range(4)]
    workers = [
        f"{host}:{dead.pid}",  # this host, process gone
        "otherhost:1#2",  # another host, silent for 3 minutes
        f"{host}:{os.getpid()}#1",  # alive and beating
        "otherhost:7",  # another host, beating
    ]
    now = utcnow()
    with catalog.session() as s:
        for run_id, worker in zip(ids, workers, strict=True):
            run = s.get(Run, run_id)
            run.state, run.worker, run.started_at = RunState.RUNNING, worker, now
            run.heartbeat_at = now - timedelta(minutes=3) if worker == "otherhost:1#2" else now
    recovered = runs.recover_stale_runs(catalog)
    assert recovered == ids[:2]
    with catalog.session() as s:
        states = {r.id: (r.state, r.error) for r in s.scalars(select(Run))}
        log = [line.message for line in s.scalars(select(RunLogLine))]
    assert states[ids[0]] == ("failed", f"worker died (process {dead.pid} on {host} is gone)")
    assert states[ids[1]][0] == "failed" and "no heartbeat" in states[ids[1]][1]
    assert states[ids[2]][0] == states[ids[3]][0] == "running"
    assert len(log) == 2 and all(m.startswith("worker died") for m in log)
    assert runs.recover_stale_runs(catalog) == []


def test_worker_names_and_pids() -> None:
    assert runs.parse_worker("host:12#3") == ("host", 12)
    assert runs.parse_worker("weird") == ("weird", None)
    assert runs.pid_alive(os.getpid())
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    # Not reaped yet: a zombie is dead for our purposes.
    for _ in range(200):
        if not runs.pid_alive(zombie.pid):
            break
        threading.Event().wait(0.02)
    assert not runs.pid_alive(zombie.pid)
    zombie.wait()


_CRASHER = """
import sys, time
from tapir.appliance.catalog.database import Catalog
from tapir.appliance.engine import runs
cat = Catalog(sys.argv[1])
run_id = runs.claim_next_run(cat, runs.worker_name())
runs.log_line(cat, run_id, "child working")
print(run_id, flush=True)
time.sleep(600)
"""


def test_a_killed_worker_is_failed_on_the_next_open(
    tmp_path: Path, catalog: Catalog, fake_plugins: FakePlugins
) -> None:
    job = _pool_and_job(catalog)
    run_id = runs.queue_run(catalog, job)
    child = subprocess.Popen(
        [sys.executable, "-c", _CRASHER, catalog.url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert int(child.stdout.readline()) == run_id
        with catalog.session() as s:
            assert s.get(Run, run_id).state == RunState.RUNNING
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    settings = Settings(home=tmp_path / "home", database_url=catalog.url)
    app = Appliance.open(settings, load_plugins(extra=[fake_plugins], entry_points=False))
    try:
        run = app.run(run_id)
        assert run.state == RunState.FAILED
        assert run.error == f"worker died (process {child.pid} on {socket.gethostname()} is gone)"
        assert app.recovery_points() == []
        assert [m for _, _, m in app.run_log(run_id)] == ["child working", run.error]
    finally:
        app.close()
    with catalog.session() as s:
        assert s.scalar(select(RecoveryPoint.id)) is None
