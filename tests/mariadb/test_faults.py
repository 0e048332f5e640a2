"""Faults: wrong credentials, a server that goes away mid-backup, a binlog gap, a busy target."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tapir.appliance.plugin_api import ConnectionFailed, PluginError, TapirError

from .conftest import USER
from .test_pitr import orders, point, restored_orders, write


def _size(path: Path) -> int:
    return path.stat().st_size


def test_wrong_password_is_reported_as_such(app, server):
    app.register_endpoint(
        "bad", "mariadb", f"127.0.0.1:{server.port}", options={"user": USER}, password="nope"
    )
    with pytest.raises(ConnectionFailed, match="wrong user or password"):
        app.test_endpoint("bad")
    app.test_endpoint("db1")  # the right one logs in


def test_unreachable_server_is_reported(app, server):
    server.kill()
    with pytest.raises(ConnectionFailed, match="cannot reach MariaDB"):
        app.test_endpoint("db1")


class _KillOnFirstWrite:
    """Wraps the engine's sink: the server dies as the backup's first bytes arrive."""

    def __init__(self, sink, kill) -> None:
        self._sink, self._kill = sink, kill

    def __getattr__(self, name):
        return getattr(self._sink, name)

    def open_file(self, item):
        writer = self._sink.open_file(item)
        kill = self._kill

        class Writer:
            def __getattr__(self, name):
                return getattr(writer, name)

            def write(self, data):
                kill()
                writer.write(data)

        return Writer()


def test_server_gone_mid_backup_leaves_no_recovery_point(app, job, server):
    write(server, "one")
    factory = app.env.writer_factory
    app.env.writer_factory = lambda *a, **k: _KillOnFirstWrite(factory(*a, **k), server.kill)
    run = app.run_job(job, level="full")
    assert run.state == "failed"
    assert "mariadb-backup failed" in run.error
    assert app.recovery_points(job=job) == []


def purge_all_but_the_current_binlog(server) -> None:
    """PURGE BINARY LOGS as an expiry would; it waits for InnoDB's binlog checkpoint.

    The server skips, silently, files its last checkpoint still needs; the
    checkpoint moves on in the background, so the purge is repeated until done.
    """
    newest = server.execute("SHOW MASTER STATUS")[0][0]
    deadline = time.monotonic() + 60
    while server.execute("SHOW BINARY LOGS")[0][0] != newest:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server never purged its binlogs before {newest}")
        server.execute(f"PURGE BINARY LOGS TO '{newest}'")
        time.sleep(0.1)


def test_binlog_gap_fails_the_log_backup_clearly(app, job, server):
    write(server, "one")
    point(app, job, "full")
    write(server, "two")
    server.execute("FLUSH BINARY LOGS")
    write(server, "three")
    server.execute("FLUSH BINARY LOGS")
    purge_all_but_the_current_binlog(server)
    run = app.run_job(job, level="log")
    assert run.state == "failed"
    assert "is gone from" in run.error and "take a full backup" in run.error, run.error
    assert [p.level for p in app.recovery_points(job=job)] == ["full"]
    # A new full starts a new chain, and log backups work again from it.
    point(app, job, "full")
    write(server, "four")
    assert point(app, job, "log").level == "log"


def test_restore_refuses_a_target_that_holds_data(app, job, server, tmp_path: Path):
    write(server, "one")
    full = point(app, job, "full")
    target = tmp_path / "busy"
    target.mkdir()
    (target / "keep.txt").write_text("precious")
    with pytest.raises(PluginError, match="not empty"):
        app.restore(full.id, target=target)
    assert (target / "keep.txt").read_text() == "precious"
    app.restore(full.id, target=target, options={"force": True})
    assert not (target / "keep.txt").exists()
    assert restored_orders(target, tmp_path / "r") == orders(server)


def test_restore_before_the_point_starts_is_refused(app, job, server, tmp_path):
    write(server, "one")
    full = point(app, job, "full")
    with pytest.raises(PluginError, match="after the requested moment"):
        app.restore(
            full.id, target=tmp_path / "t", options={"stop_datetime": "2001-01-01T00:00:00+00:00"}
        )


def test_damaged_backup_data_fails_the_restore_and_leaves_nothing_behind(
    app, job, server, tmp_path: Path
):
    write(server, "one")
    full = point(app, job, "full")
    packs = sorted((p for p in (tmp_path / "pool").rglob("*") if p.is_file()), key=_size)
    biggest = packs[-1]  # the pack holding the physical backup's chunks
    with open(biggest, "r+b") as f:
        f.seek(_size(biggest) // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x40]))
    target = tmp_path / "restored"
    with pytest.raises(TapirError):  # ChunkCorrupt, or damaged pack framing
        app.restore(full.id, target=target)
    assert not any(target.iterdir())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tapir-mariadb-")]


def test_log_backups_need_binary_logging(app, server, tmp_path):
    server.stop()
    server.extra_args = ["--skip-log-bin"]
    server.start()
    app.discover_endpoint("db1")
    app.create_job("nolog", "mariadb", "default", selection={"assets": ["db1"]}, endpoint="db1")
    write(server, "one")
    full = point(app, "nolog", "full")
    assert full.meta["backup"]["binlog_file"] == ""
    run = app.run_job("nolog", level="log")
    assert run.state == "failed"
    assert "binary logging is off" in run.error
    # The full alone still restores.
    target = tmp_path / "restored"
    app.restore(full.id, target=target)
    assert restored_orders(target, tmp_path / "r") == ["one"]
