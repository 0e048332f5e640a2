"""Copy runs through the queue: scheduled and queued runs are of kind copy, workers
execute them, and a point copied by another run meanwhile is never listed twice."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from copyhelpers import assert_ok, copies, make_tree

from tapir.appliance.catalog.models import utcnow
from tapir.appliance.engine.copy import copy_point
from tapir.appliance.engine.monitor import RunMonitor
from tapir.appliance.engine.pools import get_pool, open_repository
from tapir.appliance.engine.service import Appliance


def _source(app: Appliance, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, seed=21)
    app.create_job("web", "files", "default", options={"paths": [str(src)]})
    assert_ok(app.run_job("web"))


def test_scheduled_and_queued_copies_run_on_a_worker(app: Appliance, tmp_path: Path) -> None:
    _source(app, tmp_path)
    app.create_copy_job("vault", "default", "offsite", schedule="0 4 * * *", timezone="UTC")
    (queued,) = app.tick_scheduler(utcnow() + timedelta(days=1, minutes=1))
    assert app.run(queued).kind == "copy"
    assert app.claim_next_run("worker-1") == queued
    assert_ok(app.execute_run(queued, worker="worker-1"))
    assert len(copies(app, "vault")) == 1

    again = app.queue_run("vault")
    assert app.run(again).kind == "copy"
    assert app.claim_next_run("worker-1") == again
    assert_ok(app.execute_run(again, worker="worker-1"))
    assert len(copies(app, "vault")) == 1
    assert any("0 recovery point(s) to copy" in m for _, _, m in app.run_log(again))


def test_a_point_copied_meanwhile_is_not_listed_twice(app: Appliance, tmp_path: Path) -> None:
    _source(app, tmp_path)
    job = app.create_copy_job("vault", "default", "offsite")
    assert_ok(app.run_job("vault"))
    (first,) = copies(app, "vault")
    (source,) = app.recovery_points(job="web")

    # A second run that planned the same point before the first one recorded it.
    run_id = app.queue_run("vault")
    assert app.claim_next_run("worker-2") == run_id
    run = app.run(run_id)
    src_pool, dst_pool = get_pool(app.env, "default"), get_pool(app.env, "offsite")
    with (
        RunMonitor(app.catalog, run_id, "worker-2") as monitor,
        open_repository(app.env, src_pool) as src_repo,
        open_repository(app.env, dst_pool) as dst_repo,
    ):
        made = copy_point(
            app.env, run, job, src_pool, dst_pool, src_repo, dst_repo, source, monitor
        )
        assert made is None
        assert set(dst_repo.manifest_ids()) == {first.id}
    assert [rp.id for rp in copies(app, "vault")] == [first.id]
    assert any("copied meanwhile" in m for _, _, m in app.run_log(run_id))
