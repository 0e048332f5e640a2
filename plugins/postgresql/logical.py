"""Logical dumps of one database (``pg_dump -Fc``) and restoring a database or table.

A dump is the unit of single item restore: ``pg_restore`` takes the whole
database or one table out of it. Dumps are made by jobs with ``mode=logical``
(their own schedule), one recovery point per database.
"""

from __future__ import annotations

import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from tapir.appliance.plugin_api import (
    BackupSink,
    Item,
    ItemKind,
    PluginContext,
    PluginError,
    RestoreRequest,
    RestoreResult,
    RestoreSource,
)

from .connection import bindir, connect, run_tool, tool_env, tool_error
from .options import ConnectionSettings

BLOCK = 1 << 20


def dump_path(database: str) -> bytes:
    return f"{database}.dump".encode()


def dump_database(
    settings: ConnectionSettings, database: str, sink: BackupSink, ctx: PluginContext
) -> dict[str, object]:
    """Stream ``pg_dump -Fc`` of ``database`` into the sink; the point's metadata."""
    ctx.progress.advance(current=f"pg_dump {database}")
    with tempfile.TemporaryFile(mode="w+") as errors:
        proc = subprocess.Popen(
            [str(bindir() / "pg_dump"), "--format=custom", "--dbname", database],
            env=tool_env(settings),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=errors,
        )
        try:
            assert proc.stdout is not None
            writer = sink.open_file(Item(path=dump_path(database), kind=ItemKind.FILE, mode=0o600))
            size = 0
            while block := proc.stdout.read(BLOCK):
                writer.write(block)
                size += len(block)
                ctx.check_canceled()
            code = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        errors.seek(0)
        stderr = errors.read()
    if code != 0:
        raise tool_error(settings, "pg_dump", stderr)
    writer.close()  # only a whole dump becomes an item
    return {
        "type": "dump",
        "database": database,
        "dump_bytes": size,
        "dumped_at": datetime.now(UTC).isoformat(),
    }


def _dump_item(source: RestoreSource) -> Item:
    dumps = [i for i in source.items() if i.kind == ItemKind.FILE and i.path.endswith(b".dump")]
    if len(dumps) != 1:
        raise PluginError(f"recovery point {source.recovery_point_id} holds no database dump")
    return dumps[0]


def write_dump(request: RestoreRequest, source: RestoreSource, ctx: PluginContext) -> RestoreResult:
    """The dump file itself into the target folder (for pg_restore by hand)."""
    assert request.target is not None
    item = _dump_item(source)
    dest = Path(request.target) / item.path.decode()
    if dest.exists() and request.overwrite != "always":
        raise PluginError(f"{dest} exists; overwrite=always replaces it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    size = _save(source, item, dest, ctx)
    return RestoreResult(items_restored=1, bytes_restored=size)


def _save(source: RestoreSource, item: Item, dest: Path, ctx: PluginContext) -> int:
    size = 0
    with source.open(item) as src, dest.open("wb") as out:
        while block := src.read(BLOCK):
            out.write(block)
            size += len(block)
            ctx.progress.advance(bytes_done=len(block))
    return size


def split_table(item: str) -> tuple[str, str]:
    """``table`` or ``schema.table`` -> (schema, table)."""
    schema, dot, table = item.partition(".")
    if not dot:
        schema, table = "public", item
    if not schema or not table or "." in table:
        raise PluginError(f"{item!r} is not a table name (table or schema.table)")
    return schema, table


def restore_into_server(
    settings: ConnectionSettings,
    request: RestoreRequest,
    item: str,
    source: RestoreSource,
    ctx: PluginContext,
) -> RestoreResult:
    """``item`` empty or the database's name: the whole database; else one table.

    The database (``into_database``, default the original) is created when
    missing. Objects that exist already are refused unless overwrite is
    ``always`` (then pg_restore drops and recreates them).
    """
    original = str(source.metadata.get("database") or request.asset.name)
    database = str(request.options.get("into_database") or original)
    table = None if item in ("", original) else split_table(item)
    replace = request.overwrite == "always"
    with connect(settings) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
        if exists.fetchone() is None:
            ctx.logger.info("creating database %s", database)
            conn.execute(f'CREATE DATABASE "{_ident(database)}"')
            fresh = True
        else:
            fresh = False
    if not fresh:
        with connect(settings, database) as conn:
            if table is None:
                row = conn.execute(
                    "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S')"
                    " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
                    " AND n.nspname NOT LIKE 'pg_toast%%'"
                ).fetchone()
                if row and row[0] and not replace:
                    raise PluginError(
                        f"database {database} already holds {row[0]} relations; restore into "
                        "another (into_database=...) or overwrite=always to replace them"
                    )
            else:
                row = conn.execute("SELECT to_regclass(%s)", (f'"{table[0]}"."{table[1]}"',))
                found = row.fetchone()
                if found and found[0] is not None and not replace:
                    raise PluginError(
                        f"table {table[0]}.{table[1]} exists in {database}; restore into another "
                        "database (into_database=...) or overwrite=always to replace it"
                    )
    dump = _dump_item(source)
    with tempfile.TemporaryDirectory(prefix="tapir-pgrestore-") as tmp:
        path = Path(tmp) / "db.dump"
        size = _save(source, dump, path, ctx)
        args = ["--dbname", database, "--no-owner", "--exit-on-error"]
        if replace and not fresh:
            args += ["--clean", "--if-exists"]
        if table is not None:
            args += ["--schema", table[0], "--table", table[1]]
            if not _dump_has_table(settings, path, table):
                raise PluginError(f"the dump of {original} holds no table {table[0]}.{table[1]}")
        ctx.progress.advance(current=f"pg_restore into {database}")
        run_tool(settings, "pg_restore", *args, str(path))
    what = f"table {table[0]}.{table[1]}" if table else f"database {original}"
    ctx.logger.info("restored %s into database %s", what, database)
    return RestoreResult(items_restored=1, bytes_restored=size)


def _dump_has_table(settings: ConnectionSettings, path: Path, table: tuple[str, str]) -> bool:
    listing = run_tool(settings, "pg_restore", "--list", str(path)).stdout
    for line in listing.splitlines():
        if line.startswith(";"):
            continue
        # "215; 1259 16385 TABLE public items postgres"
        parts = line.split()
        if len(parts) >= 6 and parts[3] == "TABLE" and parts[4:6] == [table[0], table[1]]:
            return True
    return False


def _ident(name: str) -> str:
    if '"' in name or "\x00" in name:
        raise PluginError(f"database name {name!r} must not contain a double quote")
    return name
