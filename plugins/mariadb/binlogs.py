"""Binary log archiving: close the current binlog, copy every closed one not yet kept.

The copy goes over the replication protocol (``mariadb-binlog
--read-from-remote-server --raw``), so it needs only the REPLICATION SLAVE
privilege, not access to the data directory. A binlog the server no longer has
(purged, deleted) breaks point-in-time recovery past it: that is found and
reported here, at backup time, not when someone needs the restore.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import pymysql

from tapir.appliance.plugin_api import BackupSink, Item, ItemKind, PluginContext, PluginError

from .chain import Binlog, Chain, binlog_index
from .client import option_file, query, run_tool, tool
from .options import ConnectionSettings

BLOCK = 1024 * 1024


class BinlogGap(PluginError):
    """A binary log needed for point-in-time recovery is gone from the server."""


def utc(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="seconds")


def first_needed(chain: Chain) -> tuple[str, int]:
    """The binlog (base name, index) the next archive must start at."""
    if not chain.physical:
        raise PluginError("the parent recovery point holds no physical backup")
    base = chain.physical[-1]
    if not base.binlog_file:
        raise PluginError(
            "the last physical backup has no binary log position (binary logging was off); "
            "take a full backup with log_bin on"
        )
    name, index = binlog_index(base.binlog_file)
    if chain.binlogs:
        last_name, last = binlog_index(chain.binlogs[-1].name)
        if last_name == name and last + 1 > index:
            return name, last + 1
    return name, index


def archive_binlogs(
    settings: ConnectionSettings,
    conn: pymysql.connections.Connection,
    chain: Chain,
    sink: BackupSink,
    ctx: PluginContext,
) -> tuple[list[Binlog], float]:
    """Copy the closed binlogs the chain lacks into ``sink``; returns them and the close time."""
    if not query(conn, "SELECT @@log_bin")[0][0]:
        raise PluginError(
            f"binary logging is off on {settings.where} (log_bin): no log backups or "
            "point-in-time recovery are possible"
        )
    base, start = first_needed(chain)
    query(conn, "FLUSH BINARY LOGS")
    closed_at = float(query(conn, "SELECT UNIX_TIMESTAMP(NOW(6))")[0][0])
    on_server = {}
    for row in query(conn, "SHOW BINARY LOGS"):
        name, size = str(row[0]), int(row[1])
        on_server[binlog_index(name)] = (name, size)
    active_base, active = max(on_server)  # the file FLUSH just opened stays on the server
    if active_base != base:
        raise BinlogGap(
            f"the server now writes binary logs named {active_base}.*, the chain follows {base}.*:"
            " point-in-time recovery cannot continue; take a full backup"
        )
    covered = chain.archived_until or chain.physical[-1].time
    wanted = []
    for index in range(start, active):
        if (base, index) not in on_server:
            raise BinlogGap(
                f"binary log {base}.{index:06d} is gone from {settings.where} before Tapir archived"
                f" it (purged or deleted): point-in-time recovery past {utc(covered)} is "
                "impossible with this chain; take a full backup to start a new one"
            )
        wanted.append(on_server[(base, index)])
    if not wanted:
        return [], closed_at
    kept: list[Binlog] = []
    with (
        tempfile.TemporaryDirectory(prefix="tapir-mariadb-binlog-") as tmp,
        option_file(settings) as cnf,
    ):
        ctx.progress.advance(current=f"binary logs {wanted[0][0]}..{wanted[-1][0]}")
        run_tool(
            tool(
                "mariadb-binlog",
                cnf,
                "--read-from-remote-server",
                "--raw",
                f"--result-file={tmp}/",
                *(name for name, _ in wanted),
            ),
            f"copying binary logs from {settings.where}",
        )
        for name, size in wanted:
            kept.append(_store(Path(tmp) / name, name, size, sink, ctx))
    return kept, closed_at


def _store(local: Path, name: str, size: int, sink: BackupSink, ctx: PluginContext) -> Binlog:
    if not local.exists() or local.stat().st_size != size:
        got = local.stat().st_size if local.exists() else 0
        raise PluginError(f"binary log {name}: copied {got} bytes, the server lists {size}")
    path = f"binlog/{name}"
    writer = sink.open_file(Item(path=path.encode(), kind=ItemKind.FILE, mode=0o600, size=size))
    with local.open("rb") as f:
        while block := f.read(BLOCK):
            writer.write(block)
            ctx.check_canceled()
    writer.close()
    return Binlog(path=path, name=name, size=size)
