"""freeze/thaw: CHECKPOINT and a non-exclusive backup kept open in its session until thaw."""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from collections.abc import Callable

import psycopg
import pytest
from pg_server import PgServer, free_port

from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_api import AssetInfo, ConnectionFailed, PluginError
from tapir.plugins.postgresql.freeze import FreezeSessions
from tapir.plugins.postgresql.wal import parse_lsn

from .conftest import Restored

SQL = Callable[..., list[tuple]]


def backup_sessions(sql: SQL) -> list[tuple]:
    return sql(
        "SELECT usename, application_name FROM pg_stat_activity"
        " WHERE query LIKE 'SELECT pg_backup_start%%'"
    )


@pytest.fixture
def cluster(app: Appliance) -> AssetInfo:
    app.discover_endpoint("db1")
    (row,) = [a for a in app.endpoint_assets("db1") if a.kind == "postgresql-cluster"]
    return AssetInfo(row.kind, row.name, row.external_id, dict(row.meta))


def test_freeze_checkpoints_and_holds_backup_mode_until_thaw(
    app: Appliance, cluster: AssetInfo, sql: SQL
) -> None:
    plugin = app.registry.source_plugin("postgresql")
    ctx = app.plugin_context("postgresql")
    sql("CREATE TABLE t AS SELECT 1 AS x")
    before = parse_lsn(sql("SELECT pg_current_wal_lsn()::text")[0][0])
    plugin.freeze(cluster, ctx)
    redo = parse_lsn(sql("SELECT redo_lsn::text FROM pg_control_checkpoint()")[0][0])
    assert redo >= before  # the checkpoint covers everything written before the freeze
    assert backup_sessions(sql) == [("tapir", "tapir")]
    sql("INSERT INTO t VALUES (2)")  # writes go on while frozen
    with pytest.raises(PluginError, match="frozen already"):
        plugin.freeze(cluster, ctx)
    plugin.thaw(cluster, ctx)
    assert backup_sessions(sql) == []
    plugin.thaw(cluster, ctx)  # thaw is always called; a second one does nothing


def test_thaw_returns_the_backup_label(app: Appliance, cluster: AssetInfo) -> None:
    sessions = FreezeSessions()
    ctx = app.plugin_context("postgresql")
    start = sessions.freeze(cluster, ctx)
    done = sessions.thaw(cluster, ctx)
    assert done is not None and done["start_lsn"] == start
    assert f"START WAL LOCATION: {start} " in done["backup_label"]
    assert parse_lsn(done["stop_lsn"]) >= parse_lsn(start)


def test_a_server_restart_while_frozen_fails_the_thaw_clearly(
    app: Appliance, cluster: AssetInfo, pg: PgServer
) -> None:
    sessions = FreezeSessions()
    ctx = app.plugin_context("postgresql")
    sessions.freeze(cluster, ctx)
    pg.kill()
    pg.start()
    with pytest.raises(PluginError, match="leaving backup mode failed"):
        sessions.thaw(cluster, ctx)
    # The session is gone either way; freezing works again.
    sessions.freeze(cluster, ctx)
    assert sessions.thaw(cluster, ctx) is not None


def test_freeze_with_a_wrong_password_fails(
    app: Appliance, cluster: AssetInfo, pg: PgServer
) -> None:
    app.set_secret("endpoint:db1", "wrong")
    with pytest.raises(ConnectionFailed, match="wrong user name or password"):
        app.registry.source_plugin("postgresql").freeze(cluster, app.plugin_context("postgresql"))


def test_a_backup_run_leaves_no_backup_session(app: Appliance, sql: SQL) -> None:
    app.create_job("cluster", "postgresql", "default", endpoint="db1")
    assert app.run_job("cluster", level="full").state == "succeeded"
    assert backup_sessions(sql) == []


def _copy_ignoring_vanished(src: str, dst: str) -> None:
    with contextlib.suppress(FileNotFoundError):  # a temporary file the server removed
        shutil.copy2(src, dst)


def test_a_file_copy_taken_while_frozen_recovers_consistent(
    app: Appliance, cluster: AssetInfo, pg: PgServer, sql: SQL, restored: Restored
) -> None:
    # A non-atomic "snapshot" (a file copy while transfers keep running) is made
    # consistent by the backup label thaw returns and the WAL up to its stop point.
    sql("CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL)")
    sql("INSERT INTO accounts SELECT g, 1000 FROM generate_series(1, 50) g")
    stop = threading.Event()
    transfers = {"n": 0}

    def transfer_stream() -> None:
        with psycopg.connect(pg.admin_url, autocommit=True) as conn:
            while not stop.is_set():
                with conn.transaction():
                    a, b = transfers["n"] % 50 + 1, (transfers["n"] * 7) % 50 + 1
                    conn.execute("UPDATE accounts SET balance = balance - 3 WHERE id = %s", (a,))
                    conn.execute("UPDATE accounts SET balance = balance + 3 WHERE id = %s", (b,))
                transfers["n"] += 1

    sessions = FreezeSessions()
    ctx = app.plugin_context("postgresql")
    writer = threading.Thread(target=transfer_stream)
    writer.start()
    try:
        sessions.freeze(cluster, ctx)
        copy = restored.target("snapshot")
        shutil.copytree(
            pg.data,
            copy,
            ignore=shutil.ignore_patterns("postmaster.pid", "postmaster.opts"),
            copy_function=_copy_ignoring_vanished,
        )
        done = sessions.thaw(cluster, ctx)
    finally:
        stop.set()
        writer.join()
    assert done is not None and transfers["n"] > 0
    (copy / "backup_label").write_text(done["backup_label"])
    for segment in (pg.data / "pg_wal").iterdir():  # the WAL up to the stop point
        if segment.is_file():
            shutil.copy2(segment, copy / "pg_wal" / segment.name)
    owner = pg.data.stat()
    for folder, dirs, files in os.walk(copy):
        for name in [".", *dirs, *files]:
            os.chown(os.path.join(folder, name), owner.st_uid, owner.st_gid)
    port = free_port()
    pg.pg_ctl_at(copy, "-o", f"-p {port} -k {copy} -c listen_addresses=127.0.0.1", "-w", "start")
    assert restored.query(copy, port, "SELECT count(*), sum(balance) FROM accounts") == [
        (50, 50 * 1000)
    ]
