"""A consistency group of two real PostgreSQL servers written by one transaction stream:
the restored pair holds exactly the same transactions, and a member that cannot freeze
or back up fails the whole group clearly."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import psycopg
import pytest
from pg_server import PgServer, free_port

from tapir.appliance.engine.service import Appliance

from .conftest import FREEZE_LOCK, FREEZE_TIMEOUTS, Writer, restored_dir_numbers, sql


def backup_sessions(server: PgServer) -> list[tuple]:
    return sql(
        server,
        "SELECT pid FROM pg_stat_activity WHERE query LIKE 'SELECT pg_backup_start%%'",
    )


def test_restored_pair_is_mutually_consistent(
    app: Appliance, servers: tuple[PgServer, PgServer], restore_dir: Path
) -> None:
    app.create_group("pair", ["db1", "db2"], freeze_window="10s")
    with Writer(servers) as writer:
        writer.wait_for(30)
        grun = app.run_group("pair")
        assert grun.state == "succeeded", grun.error
        at_group = writer.committed
        writer.wait_for(at_group + 30)  # writes go on after the thaw
        final = writer.stop()
    assert grun.freeze_seconds is not None and 0 < grun.freeze_seconds <= 10
    members = {m.job_name: m for m in grun.members}
    assert set(members) == {"db1", "db2"}
    for m in members.values():
        assert m.mark["restore_point"] == grun.label and m.mark["writes_held"] is True
        point = app.recovery_point(m.recovery_point_id)
        assert point.level == "log"  # the base full came first, the mark is in the log
        assert point.meta["consistency_mark"] == m.mark

    ports = {"db1": free_port(), "db2": free_port()}
    report = app.restore_group(
        "pair",
        restore_dir / "pair",
        member_options={job: {"port": port} for job, port in ports.items()},
    )
    assert not report.failed, [(m.job, m.error) for m in report.failed]
    assert {m.options["target_name"] for m in report.members} == {grun.label}
    one = restored_dir_numbers(restore_dir / "pair" / "db1", ports["db1"])
    two = restored_dir_numbers(restore_dir / "pair" / "db2", ports["db2"])
    assert one == two  # the same transactions on both: one moment across the servers
    assert one, "the group's moment holds no transaction"
    assert one == list(range(len(one)))  # a prefix of the stream, no gap
    assert len(one) < final  # and the writes after the group run are not in it


def test_a_member_that_cannot_freeze_thaws_everyone_and_keeps_no_point(
    app: Appliance, servers: tuple[PgServer, PgServer]
) -> None:
    app.create_group("pair", ["db1", "db2"])
    for job in ("db1", "db2"):
        assert app.run_job(job, level="full").state == "succeeded"
    before = {p.id for p in app.recovery_points()}
    one, two = servers
    # A transaction on db2 holds the shared lock and never ends: db2 cannot freeze.
    with psycopg.connect(two.admin_url) as holder:
        holder.execute("SELECT pg_advisory_xact_lock_shared(%s)", (FREEZE_LOCK,))
        grun = app.run_group("pair")
        holder.rollback()
    assert grun.state == "failed"
    assert grun.error is not None
    assert "member db2" in grun.error
    assert f"within {FREEZE_TIMEOUTS['db2']} s (freeze_timeout)" in grun.error
    assert "every member thawed, no recovery point kept" in grun.error
    assert grun.freeze_seconds is not None  # measured also when the freeze failed
    assert {p.id for p in app.recovery_points()} == before
    # db1 froze and was thawed: its backup mode ended and a writer gets the lock at once.
    assert backup_sessions(one) == [] and backup_sessions(two) == []
    with psycopg.connect(one.admin_url) as conn:
        got = conn.execute("SELECT pg_try_advisory_xact_lock_shared(%s)", (FREEZE_LOCK,))
        assert got.fetchone() == (True,)
        conn.execute("INSERT INTO seq VALUES (1)")
        conn.commit()
    assert sql(one, "SELECT n FROM seq") == [(1,)]
    (last,) = app.group_runs("pair", limit=1)
    assert last.id == grun.id and last.state == "failed"


def test_a_member_backup_failing_after_the_thaw_fails_the_group(
    app: Appliance, servers: tuple[PgServer, PgServer], tmp_path: Path, restore_dir: Path
) -> None:
    app.create_pool("second", "disk", path=tmp_path / "second")
    app.update_job("db2", pool="second")
    app.create_group("pair", ["db1", "db2"])
    for job in ("db1", "db2"):
        assert app.run_job(job, level="full").state == "succeeded"
    shutil.move(tmp_path / "second", tmp_path / "second-gone")  # the pool's disk is gone
    grun = app.run_group("pair")
    assert grun.state == "failed"
    assert grun.freeze_seconds is not None  # freeze, mark and thaw went through
    assert grun.error is not None and grun.error.startswith("group run failed: member db2")
    by_job = {m.job_name: m for m in grun.members}
    assert by_job["db2"].recovery_point_id is None and by_job["db2"].state == "failed"
    assert backup_sessions(servers[1]) == []
    # A failed group run has no common moment: restoring it is refused.
    with pytest.raises(Exception, match="no succeeded run"):
        app.restore_group("pair", restore_dir / "x")
    with pytest.raises(Exception, match=f"group run {grun.id} of 'pair' failed"):
        app.restore_group("pair", restore_dir / "x", run_id=grun.id)


def _lock_free(server: PgServer) -> bool:
    with psycopg.connect(server.admin_url) as conn:
        got = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (FREEZE_LOCK,)).fetchone()
        conn.rollback()
        return got == (True,)


def test_a_freeze_that_returns_after_the_window_is_thawed_when_it_returns(
    app: Appliance, servers: tuple[PgServer, PgServer]
) -> None:
    app.create_group("pair", ["db1", "db2"], freeze_window="1s")
    for job in ("db1", "db2"):
        assert app.run_job(job, level="full").state == "succeeded"
    before = {p.id for p in app.recovery_points()}
    one, two = servers
    with psycopg.connect(one.admin_url) as holder:
        # db1's freeze waits for this lock longer than the 1 s window (freeze_timeout 30 s).
        holder.execute("SELECT pg_advisory_xact_lock_shared(%s)", (FREEZE_LOCK,))
        grun = app.run_group("pair")
        assert grun.state == "failed"
        assert grun.error is not None
        assert "member db1" in grun.error and "did not freeze within the 1 s window" in grun.error
        assert backup_sessions(two) == []  # db2 froze in time and was thawed at once
        assert _lock_free(two)
        holder.rollback()  # now db1's pending freeze gets the lock and returns
    # The engine thaws it as soon as it returns: its lock and backup mode go away.
    for _ in range(300):
        if _lock_free(one) and backup_sessions(one) == []:
            break
        time.sleep(0.1)
    assert _lock_free(one) and backup_sessions(one) == []
    assert {p.id for p in app.recovery_points()} == before


def _cluster(app: Appliance, endpoint: str):
    from tapir.appliance.plugin_api import AssetInfo

    app.discover_endpoint(endpoint)
    (row,) = [a for a in app.endpoint_assets(endpoint) if a.kind == "postgresql-cluster"]
    return AssetInfo(row.kind, row.name, row.external_id, dict(row.meta))


def _insert_waits(server: PgServer, n: int) -> bool:
    """True when an insert into seq has to wait for a lock (given up after 0.3 s)."""
    with psycopg.connect(server.admin_url, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '300ms'")
        try:
            conn.execute("INSERT INTO seq VALUES (%s)", (n,))
            return False
        except psycopg.errors.LockNotAvailable:
            return True


def test_freeze_tables_hold_writers_until_thaw(
    app: Appliance, servers: tuple[PgServer, PgServer]
) -> None:
    from pg_server import TAPIR_PASSWORD, TAPIR_USER

    from tapir.appliance.plugin_api import PluginError

    one = servers[0]
    sql(one, f"GRANT UPDATE ON seq TO {TAPIR_USER}")
    for name, tables in (("t-ok", ["public.seq"]), ("t-bad", ["nosuch"])):
        app.register_endpoint(
            name,
            "postgresql",
            f"127.0.0.1:{one.port}",
            options={"user": TAPIR_USER, "freeze_tables": tables, "freeze_timeout": 2},
            password=TAPIR_PASSWORD,
        )
    plugin = app.registry.source_plugin("postgresql")
    ctx = app.plugin_context("postgresql")
    ok = _cluster(app, "t-ok")
    plugin.freeze(ok, ctx)
    try:
        assert _insert_waits(one, 1)
        mark = plugin.mark(ok, ctx, "tables-mark")
        assert mark["restore_point"] == "tables-mark" and mark["writes_held"] is True
    finally:
        plugin.thaw(ok, ctx)
    assert not _insert_waits(one, 2)
    with pytest.raises(PluginError, match=r'cannot take the freeze locks: .*"nosuch"'):
        plugin.freeze(_cluster(app, "t-bad"), ctx)
    assert backup_sessions(one) == []  # the failed freeze left backup mode too
