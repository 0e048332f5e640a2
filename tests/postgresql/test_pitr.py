"""Point-in-time recovery against a real server: base backup, WAL archived by log backups,
restores to a moment, a named restore point, an LSN and the latest state, each proved by
exactly the rows that exist in the started restored server."""

from __future__ import annotations

import tarfile
from collections.abc import Callable

import pytest
from pg_server import free_port

from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_api import PluginError

from .conftest import Restored

SQL = Callable[..., list[tuple]]


def write(sql: SQL, n: int) -> str:
    """Commit row ``n``; returns the server's clock just after the commit."""
    sql("INSERT INTO events (n, at) VALUES (%s, clock_timestamp())", (n,))
    # The clock must move on before the next commit, so that a moment lies between them.
    sql("SELECT pg_sleep(0.01)")
    return str(sql("SELECT clock_timestamp()")[0][0].isoformat())


def rows(restored: Restored, target, port: int) -> list[int]:
    return [r[0] for r in restored.query(target, port, "SELECT n FROM events ORDER BY n")]


@pytest.fixture
def history(app: Appliance, sql: SQL) -> dict[str, object]:
    """Rows 1..5 written around one full and two log backups; the moments between them."""
    sql("CREATE TABLE events (n int PRIMARY KEY, at timestamptz NOT NULL)")
    app.create_job("cluster", "postgresql", "default", endpoint="db1")
    after1 = write(sql, 1)
    full = app.run_job("cluster", level="full")
    assert full.state == "succeeded", full.error
    after2 = write(sql, 2)
    sql("SELECT pg_create_restore_point('before-3')")
    after3 = write(sql, 3)
    lsn_after3 = sql("SELECT pg_current_wal_lsn()::text")[0][0]
    write(sql, 4)
    log1 = app.run_job("cluster", level="log")
    assert log1.state == "succeeded", log1.error
    write(sql, 5)
    log2 = app.run_job("cluster", level="log")
    assert log2.state == "succeeded", log2.error
    points = app.recovery_points(job="cluster")
    return {
        "after1": after1,
        "after2": after2,
        "after3": after3,
        "lsn_after3": lsn_after3,
        "points": {p.level: p for p in points if p.level == "full"}
        | {"log1": points[1], "log2": points[0]},
    }


def test_points_record_the_base_backup_and_the_wal_chain(
    app: Appliance, history: dict, sql: SQL
) -> None:
    points = history["points"]
    full, log1, log2 = points["full"], points["log1"], points["log2"]
    assert (full.level, log1.level, log2.level) == ("full", "log", "log")
    assert full.meta["type"] == "base" and full.meta["backup_label"]["LABEL"] == "tapir db1"
    assert full.meta["backup_label"]["START WAL LOCATION"].startswith(full.meta["start_lsn"])
    assert full.meta["timeline"] == 1
    assert log2.meta["start_lsn"] == full.meta["start_lsn"]
    assert log1.meta["wal_new"] >= 1 and log2.meta["wal_new"] >= 1
    # Every log point holds the whole chain, so any one of them restores alone.
    names = {i.path for i in app.list_items(log2.id, recursive=True)}
    assert b"base.tar" in names and b"chain" in names
    segments = sorted(n for n in names if n.startswith(b"wal/"))
    assert len(segments) == log1.meta["wal_new"] + log2.meta["wal_new"]
    assert segments[-1].decode().endswith(log2.meta["wal_last"])
    # The slot keeps the WAL the next log backup needs.
    assert sql("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'tapir'")[0][0] == 1


def test_restore_to_a_moment_between_two_writes(
    app: Appliance, history: dict, restored: Restored
) -> None:
    target, port = restored.target("at-time"), free_port()
    result = app.restore(
        history["points"]["log2"].id,
        target=target,
        options={"target_time": history["after2"], "port": port},
    )
    assert not result.failed
    assert rows(restored, target, port) == [1, 2]
    # Promoted: the restored server takes writes.
    restored.query(target, port, "INSERT INTO events VALUES (99, now()) RETURNING n")


def test_restore_to_a_named_point_and_to_an_lsn(
    app: Appliance, history: dict, restored: Restored
) -> None:
    point = history["points"]["log2"].id
    named, port1 = restored.target("named"), free_port()
    app.restore(point, target=named, options={"target_name": "before-3", "port": port1})
    assert rows(restored, named, port1) == [1, 2]
    at_lsn, port2 = restored.target("lsn"), free_port()
    app.restore(point, target=at_lsn, options={"target_lsn": history["lsn_after3"], "port": port2})
    assert rows(restored, at_lsn, port2) == [1, 2, 3]


def test_restore_latest_of_each_point(app: Appliance, history: dict, restored: Restored) -> None:
    points = history["points"]
    expected = {"full": [1], "log1": [1, 2, 3, 4], "log2": [1, 2, 3, 4, 5]}
    for name, want in expected.items():
        target, port = restored.target(name), free_port()
        app.restore(points[name].id, target=target, options={"port": port})
        assert rows(restored, target, port) == want, name


def test_targets_outside_the_point_are_refused_before_writing(
    app: Appliance, history: dict, restored: Restored
) -> None:
    points = history["points"]
    target = restored.target("refused")
    with pytest.raises(PluginError, match="after the WAL this point holds"):
        # log1 ends before row 5 was written: a later moment needs a later point.
        app.restore(
            points["log1"].id, target=target, options={"target_time": "2999-01-01T00:00:00+00:00"}
        )
    with pytest.raises(PluginError, match="before this point's base backup"):
        app.restore(points["log2"].id, target=target, options={"target_time": history["after1"]})
    with pytest.raises(PluginError, match="needs a time zone"):
        app.restore(points["log2"].id, target=target, options={"target_time": "2026-01-01 10:00"})
    with pytest.raises(PluginError, match="one recovery target"):
        app.restore(
            points["log2"].id, target=target, options={"target_name": "x", "target_lsn": "0/1"}
        )
    assert not target.exists()


def test_a_target_holding_data_is_refused_unless_told(
    app: Appliance, history: dict, restored: Restored
) -> None:
    target, port = restored.target("busy"), free_port()
    target.mkdir()
    (target / "precious.txt").write_text("keep me")
    point = history["points"]["log1"].id
    with pytest.raises(PluginError, match="is not empty"):
        app.restore(point, target=target, options={"port": port})
    assert (target / "precious.txt").read_text() == "keep me"
    assert [p.name for p in target.iterdir()] == ["precious.txt"]
    app.restore(point, target=target, overwrite="always", options={"port": port})
    assert not (target / "precious.txt").exists()
    assert rows(restored, target, port) == [1, 2, 3, 4]
    # A running server's folder is never replaced.
    with pytest.raises(PluginError, match="running"):
        app.restore(point, target=target, overwrite="always", options={"port": port})


def test_pruning_older_points_keeps_the_newest_restorable(
    app: Appliance, history: dict, restored: Restored
) -> None:
    # Retention knows nothing of WAL: it may drop the full and the first log point,
    # because the newest point holds the base backup and every segment it needs.
    app.create_retention_policy("last", keep_last=1)
    app.update_job("cluster", retention="last")
    plan = app.prune(dry_run=False, job="cluster")
    assert plan.deleted == 2
    app.gc("default")
    (kept,) = app.recovery_points(job="cluster")
    assert kept.id == history["points"]["log2"].id
    target, port = restored.target("pruned"), free_port()
    app.restore(kept.id, target=target, options={"target_time": history["after3"], "port": port})
    assert rows(restored, target, port) == [1, 2, 3]


def test_prepared_but_not_started_and_raw_files(
    app: Appliance, history: dict, restored: Restored
) -> None:
    point = history["points"]["log1"]
    target = restored.target("prepared")
    result = app.restore(
        point.id, target=target, options={"start": False, "target_name": "before-3"}
    )
    assert "not started" in result.warnings[0]
    assert (target / "recovery.signal").exists() and not (target / "postmaster.pid").exists()
    conf = (target / "postgresql.auto.conf").read_text()
    assert "recovery_target_name = 'before-3'" in conf and "tapir_wal" in conf
    wal = sorted(p.name for p in (target / "tapir_wal").iterdir())
    assert wal[-1] == point.meta["wal_last"]
    raw = restored.target("raw")
    app.restore(point.id, [b"base.tar"], target=raw)
    assert [p.name for p in raw.iterdir()] == ["base.tar"]
    with tarfile.open(raw / "base.tar") as tar:
        assert tar.getmember("backup_label").size > 0


def test_an_unknown_restore_point_fails_with_the_servers_words(
    app: Appliance, history: dict, restored: Restored
) -> None:
    target, port = restored.target("unknown-name"), free_port()
    with pytest.raises(PluginError, match="recovery target was reached"):
        app.restore(
            history["points"]["log2"].id,
            target=target,
            options={"target_name": "no-such-point", "port": port},
        )
    (run,) = [r for r in app.runs(job="cluster") if r.kind == "restore"]
    assert run.state == "failed"
