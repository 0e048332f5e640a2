"""Logical dumps (``mariadb-dump``), one per database, for single database/table restore.

Each database is dumped in one consistent snapshot (``--single-transaction``)
without ``CREATE DATABASE``/``USE`` lines, so it can be loaded under another
name. One table is restored by filtering its sections out of the database's
dump (:func:`table_lines`).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import quote

import pymysql

from tapir.appliance.plugin_api import BackupSink, Item, ItemKind, PluginContext, PluginError

from .chain import Dump
from .client import option_file, query, tail, tool
from .options import ConnectionSettings

BLOCK = 1024 * 1024
SYSTEM_DATABASES = frozenset({"information_schema", "performance_schema", "mysql", "sys"})
_SECTION = re.compile(rb"^-- (Table structure|Dumping data) for table `(?P<name>(?:[^`]|``)+)`$")
_OTHER_SECTION = re.compile(
    rb"^-- (Temporary table structure for view|Final view structure for view|Dumping routines"
    rb"|Dumping events)"
)
_SESSION_SETTING = re.compile(rb"^/\*!\d+ SET .*\*/;$")


def user_databases(conn: pymysql.connections.Connection) -> list[str]:
    """Every database but the server's own."""
    return sorted(
        str(r[0]) for r in query(conn, "SHOW DATABASES") if str(r[0]) not in SYSTEM_DATABASES
    )


def dump_databases(
    settings: ConnectionSettings,
    conn: pymysql.connections.Connection,
    databases: Iterable[str] | None,
    folder: str,
    sink: BackupSink,
    ctx: PluginContext,
) -> list[Dump]:
    """Dump ``databases`` (None: every user database) into the sink as ``folder/DB.sql``."""
    present = user_databases(conn)
    chosen = present if databases is None else list(databases)
    missing = [d for d in chosen if d not in present]
    if missing:
        raise PluginError(f"databases not on {settings.where}: {', '.join(missing)}")
    dumps = []
    with option_file(settings) as cnf:
        for database in chosen:
            started = float(query(conn, "SELECT UNIX_TIMESTAMP(NOW(6))")[0][0])
            # Quoted: a database name may hold characters a path must not ('/', '..').
            path = f"{folder}/{quote(database, safe='')}.sql"
            dumps.append(_dump_one(cnf, database, path, started, sink, ctx))
    return dumps


def _dump_one(
    cnf: Path, database: str, path: str, started: float, sink: BackupSink, ctx: PluginContext
) -> Dump:
    ctx.progress.advance(current=f"dump of {database}")
    argv = tool(
        "mariadb-dump",
        cnf,
        "--single-transaction",
        "--routines",
        "--events",
        "--triggers",
        "--hex-blob",
        "--skip-dump-date",
        "--",
        database,
    )
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors)
        assert proc.stdout is not None
        writer = sink.open_file(Item(path=path.encode(), kind=ItemKind.FILE, mode=0o600))
        try:
            while block := proc.stdout.read(BLOCK):
                writer.write(block)
                ctx.check_canceled()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        if proc.wait() != 0:
            errors.seek(0)
            raise PluginError(f"mariadb-dump of {database} failed: {tail(errors.read())}")
        writer.close()
    return Dump(path=path, database=database, time=started)


def table_lines(lines: Iterable[bytes], table: str) -> Iterator[bytes]:
    """The lines of a database dump that recreate and fill only ``table``.

    Kept: the dump's opening session settings, the table's structure and data
    sections, and harmless session SET lines elsewhere (they restore settings).
    """
    wanted = table.replace("`", "``").encode()
    keep = True
    found = False
    for line in lines:
        bare = line.rstrip(b"\r\n")
        m = _SECTION.match(bare)
        if m is not None:
            keep = m["name"] == wanted
            found = found or keep
        elif _OTHER_SECTION.match(bare):
            keep = False
        if keep or _SESSION_SETTING.match(bare):
            yield line
    if not found:
        raise PluginError(f"table {table!r} is not in the dump")
