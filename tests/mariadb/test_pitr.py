"""Full, incremental and log backups through the engine, and point-in-time restores."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from mariadb_server import MariaDBServer

from tapir.appliance.engine.service import Appliance


def write(server: MariaDBServer, item: str) -> float:
    """Insert one order; returns the server's clock when it was written."""
    server.execute("INSERT INTO shop.orders (item, written) VALUES (%s, NOW(6))", item)
    return float(server.execute("SELECT UNIX_TIMESTAMP(NOW(6))")[0][0])


def next_second(server: MariaDBServer) -> int:
    """Wait until the server's clock enters a new whole second; returns that second.

    Binary log events carry whole seconds, so a restore moment between two writes
    is a second boundary with one write before and one after it.
    """
    now = float(server.execute("SELECT UNIX_TIMESTAMP(NOW(6))")[0][0])
    boundary = int(now) + 1
    while float(server.execute("SELECT UNIX_TIMESTAMP(NOW(6))")[0][0]) < boundary:
        time.sleep(0.05)
    return boundary


def orders(server: MariaDBServer) -> list[str]:
    return [r[0] for r in server.execute("SELECT item FROM shop.orders ORDER BY id")]


def restored_orders(datadir: Path, base: Path) -> list[str]:
    restored = MariaDBServer.start_on(datadir, base)
    try:
        return orders(restored)
    finally:
        restored.stop()


def iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat()


def point(app: Appliance, job: str, level: str):
    run = app.run_job(job, level=level)
    assert run.state == "succeeded", run.error
    return app.recovery_points(job=job)[0]


def test_restore_to_a_moment_between_two_writes(app, job, server, tmp_path):
    write(server, "before-full")
    full = point(app, job, "full")
    assert full.level == "full"
    write(server, "after-full")
    incr = point(app, job, "incremental")
    assert incr.level == "incremental"
    # mariadb-backup started from the full's checkpoint LSN.
    assert incr.meta["backup"]["from_lsn"] == full.meta["backup"]["to_lsn"]
    assert incr.meta["backup"]["level"] == "incremental"
    write(server, "after-incremental")
    next_second(server)
    write(server, "a")
    moment = next_second(server)  # "a" was written before it, "b" after it
    write(server, "b")
    next_second(server)
    write(server, "c")
    logs = point(app, job, "log")
    assert logs.level == "log"
    assert logs.meta["binlogs"], logs.meta
    assert len(logs.meta["chain"]["physical"]) == 2  # the full and the incremental
    # The log point references the physical backups; only the binlogs are new data.
    assert logs.bytes_new < full.bytes_new / 10

    target = tmp_path / "at-moment"
    app.restore(logs.id, target=target, options={"stop_datetime": iso(moment)})
    assert restored_orders(target, tmp_path / "r1") == [
        "before-full",
        "after-full",
        "after-incremental",
        "a",
    ]

    latest = tmp_path / "latest"
    app.restore(logs.id, target=latest)
    assert restored_orders(latest, tmp_path / "r2") == [
        "before-full",
        "after-full",
        "after-incremental",
        "a",
        "b",
        "c",
    ]


def test_restore_between_full_and_incremental_uses_the_full_and_its_binlogs(
    app, job, server, tmp_path
):
    write(server, "one")
    point(app, job, "full")
    next_second(server)
    write(server, "two")
    moment = next_second(server)
    write(server, "three")
    point(app, job, "incremental")
    write(server, "four")
    logs = point(app, job, "log")
    target = tmp_path / "restored"
    app.restore(logs.id, target=target, options={"stop_datetime": iso(moment)})
    assert restored_orders(target, tmp_path / "r") == ["one", "two"]


def test_restore_to_a_binlog_position(app, job, server, tmp_path):
    write(server, "one")
    point(app, job, "full")
    write(server, "two")
    file, pos = server.execute("SHOW MASTER STATUS")[0][:2]
    write(server, "three")
    logs = point(app, job, "log")
    target = tmp_path / "restored"
    app.restore(logs.id, target=target, options={"stop_position": f"{file}:{pos}"})
    assert restored_orders(target, tmp_path / "r") == ["one", "two"]
