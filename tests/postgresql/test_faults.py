"""Faults: a server that goes away mid-backup (no half point, nothing lost afterwards) and
WAL gaps, detected and named at backup time."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pg_server import PgServer, free_port

from tapir.appliance.engine.service import Appliance
from tapir.plugins.postgresql import archive, basebackup

from .conftest import Restored

SQL = Callable[..., list[tuple]]


def log_text(app: Appliance, run_id: int) -> str:
    return " ".join(message for _, _, message in app.run_log(run_id))


@pytest.fixture
def job(app: Appliance, sql: SQL) -> str:
    sql("CREATE TABLE events (n int PRIMARY KEY)")
    app.create_job("cluster", "postgresql", "default", endpoint="db1")
    return "cluster"


def test_server_killed_during_a_full_leaves_no_point(
    app: Appliance, pg: PgServer, job: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = basebackup.copy_stream

    def dying(src, writer, ctx, on_head):  # type: ignore[no-untyped-def]
        def head(block: bytes) -> None:
            on_head(block)
            pg.kill()  # the tar has begun to flow, most of it is still on the server

        return real(src, writer, ctx, head)

    monkeypatch.setattr(basebackup, "copy_stream", dying)
    run = app.run_job(job, level="full")
    assert run.state == "failed"
    assert "pg_basebackup" in (run.error or "") + log_text(app, run.id)
    assert app.recovery_points(job=job) == []


def test_server_gone_before_a_log_backup_loses_nothing(
    app: Appliance,
    pg: PgServer,
    sql: SQL,
    job: str,
    restored: Restored,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert app.run_job(job, level="full").state == "succeeded"
    sql("INSERT INTO events VALUES (1)")
    real = archive._receive

    def receive_after_crash(*args):  # type: ignore[no-untyped-def]
        pg.kill()
        return real(*args)

    monkeypatch.setattr(archive, "_receive", receive_after_crash)
    run = app.run_job(job, level="log")
    assert run.state == "failed" and "pg_receivewal" in (run.error or "") + log_text(app, run.id)
    assert len(app.recovery_points(job=job)) == 1
    monkeypatch.undo()
    pg.start()
    sql("INSERT INTO events VALUES (2)")
    run = app.run_job(job, level="log")
    assert run.state == "succeeded", run.error
    latest = app.recovery_points(job=job)[0]
    target, port = restored.target("after-crash"), free_port()
    app.restore(latest.id, target=target, options={"port": port})
    assert restored.query(target, port, "SELECT n FROM events ORDER BY n") == [(1,), (2,)]


def _churn(sql: SQL, times: int) -> None:
    """Fill and switch WAL segments, then checkpoint so the server recycles old ones."""
    for i in range(times):
        sql(
            "INSERT INTO events SELECT g FROM generate_series(%s::int, %s::int) g",
            (1000 * i + 10, 1000 * i + 900),
        )
        sql("SELECT pg_switch_wal()")
    sql("CHECKPOINT")
    sql("CHECKPOINT")


def test_a_dropped_slot_is_a_wal_gap_reported_at_backup_time(
    app: Appliance, sql: SQL, job: str
) -> None:
    assert app.run_job(job, level="full").state == "succeeded"
    assert app.run_job(job, level="log").state == "succeeded"
    sql("SELECT pg_drop_replication_slot('tapir')")
    _churn(sql, 6)
    run = app.run_job(job, level="log")
    assert run.state == "failed"
    message = (run.error or "") + log_text(app, run.id)
    assert "WAL gap" in message and "take a full backup" in message
    assert len(app.recovery_points(job=job)) == 2
    # A new full starts a new chain, and log backups work again.
    assert app.run_job(job, level="full").state == "succeeded"
    sql("INSERT INTO events VALUES (1)")
    assert app.run_job(job, level="log").state == "succeeded"


def test_a_lost_staging_segment_is_named(
    app: Appliance, sql: SQL, job: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert app.run_job(job, level="full").state == "succeeded"
    _churn(sql, 3)
    real = archive._receive
    lost: list[str] = []

    def receive_then_lose(settings, staging: Path, end_lsn: int, expected: str):  # type: ignore[no-untyped-def]
        real(settings, staging, end_lsn, expected)
        segments = sorted(p for p in staging.iterdir() if archive.SEGMENT_NAME.match(p.name))
        segments[-2].unlink()  # e.g. a disk error in the staging folder
        lost.append(segments[-2].name)

    monkeypatch.setattr(archive, "_receive", receive_then_lose)
    run = app.run_job(job, level="log")
    assert run.state == "failed"
    message = (run.error or "") + log_text(app, run.id)
    assert "WAL gap" in message and f"missing {lost[0]}" in message
    assert len(app.recovery_points(job=job)) == 1
