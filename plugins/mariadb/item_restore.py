"""Single item restore: one database or one table from a point's logical dump.

The item goes into the endpoint's server, under its own database name or the
``target_database`` restore option. A database that already holds tables, or a
table that already exists, is left alone unless the restore says
``overwrite="always"``.
"""

from __future__ import annotations

import io
import subprocess
import tempfile
from collections.abc import Iterator

from tapir.appliance.plugin_api import (
    PluginContext,
    PluginError,
    RestoreRequest,
    RestoreResult,
    RestoreSource,
)

from .chain import CHAIN_PATH, Chain
from .client import option_file, query, session, tail, tool
from .dumps import table_lines
from .options import ConnectionSettings


def parse_item(item: str) -> tuple[str, str | None]:
    """``(database, table or None)`` of ``db``, ``db.table`` or ``db/table``."""
    sep = "/" if "/" in item else "."
    database, _, table = item.partition(sep)
    if not database or (sep in item and not table):
        raise PluginError(f"item {item!r} is not DATABASE or DATABASE.TABLE")
    return database, table or None


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def restore_one(
    request: RestoreRequest,
    item: str,
    source: RestoreSource,
    settings: ConnectionSettings,
    ctx: PluginContext,
) -> RestoreResult:
    """Load one database or table of the point's dump into the endpoint's server."""
    database, table = parse_item(item)
    stored = {i.path: i for i in source.items()}
    if CHAIN_PATH not in stored:
        raise PluginError(f"recovery point {source.recovery_point_id} holds no MariaDB backup")
    chain = Chain.from_item(stored[CHAIN_PATH])
    dump = next((d for d in chain.dumps if d.database == database), None)
    if dump is None:
        have = ", ".join(d.database for d in chain.dumps) or "none"
        raise PluginError(
            f"recovery point {source.recovery_point_id} has no logical dump of {database!r} "
            f"(dumps of: {have}); set the job option dump to make them"
        )
    into = str(request.options.get("target_database") or database)
    replace = request.overwrite == "always"
    with session(settings) as conn:
        tables = [
            str(r[0])
            for r in query(
                conn,
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                into,
            )
        ]
        if table is None and tables and not replace:
            raise PluginError(
                f"database {into!r} on {settings.where} already holds {len(tables)} table(s); "
                "restore under another target_database or with overwrite=always"
            )
        if table is not None and table in tables and not replace:
            raise PluginError(
                f"table {into}.{table} already exists on {settings.where}; restore under another "
                "target_database or with overwrite=always"
            )
        query(conn, f"CREATE DATABASE IF NOT EXISTS {_quote(into)}")
    ctx.logger.info("restoring %s from %s into %s", item, dump.path, into)
    data = source.open(stored[dump.path.encode()])
    reader = data if hasattr(data, "readline") else io.BufferedReader(data)  # type: ignore[arg-type]
    lines: Iterator[bytes] = iter(reader) if table is None else table_lines(reader, table)
    done = 0
    with option_file(settings) as cnf, tempfile.TemporaryFile() as errors:
        client = subprocess.Popen(
            tool("mariadb", cnf, "--binary-mode", into), stdin=subprocess.PIPE, stderr=errors
        )
        assert client.stdin is not None
        try:
            for line in lines:
                client.stdin.write(line)
                done += len(line)
            client.stdin.close()
        except BrokenPipeError:
            pass  # the client ended early; its exit code and message say why
        except BaseException:
            client.kill()
            client.wait()
            raise
        finally:
            data.close()
        if client.wait() != 0:
            errors.seek(0)
            raise PluginError(f"loading {item} into {into} failed: {tail(errors.read())}")
    ctx.progress.advance(bytes_done=done, items_done=1)
    return RestoreResult(items_restored=1, bytes_restored=done)
