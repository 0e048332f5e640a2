"""Talking to a server: SQL sessions (PyMySQL) and the MariaDB command-line tools.

The tools get their credentials from an option file readable only by us, never
on the command line where ``ps`` would show the password.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pymysql

from tapir.appliance.plugin_api import ConnectionFailed, PluginError

from .options import ConnectionSettings

CONNECT_TIMEOUT = 10
ACCESS_DENIED = 1045


def connect(settings: ConnectionSettings) -> pymysql.connections.Connection:
    """An autocommit session; ConnectionFailed with the reason when refused."""
    kwargs: dict[str, object] = {
        "user": settings.user,
        "password": settings.password,
        "autocommit": True,
        "connect_timeout": CONNECT_TIMEOUT,
        "charset": "utf8mb4",
    }
    if settings.socket:
        kwargs["unix_socket"] = settings.socket
    else:
        kwargs["host"] = settings.host
        kwargs["port"] = settings.port
    try:
        return pymysql.connect(**kwargs)  # type: ignore[arg-type]
    except pymysql.err.OperationalError as exc:
        code = exc.args[0] if exc.args else None
        if code == ACCESS_DENIED:
            raise ConnectionFailed(
                f"MariaDB at {settings.where} refused user {settings.user!r}: wrong user or "
                "password (access denied)"
            ) from None
        raise ConnectionFailed(
            f"cannot reach MariaDB at {settings.where}: {exc.args[-1]}"
        ) from None


def query(conn: pymysql.connections.Connection, sql: str, *args: object) -> list[tuple]:
    """Rows of one statement; a lost server becomes a PluginError."""
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args or None)
            return list(cur.fetchall())
    except (pymysql.err.OperationalError, pymysql.err.InterfaceError) as exc:
        raise PluginError(f"MariaDB statement {sql.split()[0]} failed: {exc}") from None


@contextmanager
def session(settings: ConnectionSettings) -> Iterator[pymysql.connections.Connection]:
    """A session closed on exit."""
    conn = connect(settings)
    try:
        yield conn
    finally:
        with contextlib.suppress(Exception):  # the server is gone: nothing to close
            conn.close()


@contextmanager
def option_file(settings: ConnectionSettings) -> Iterator[Path]:
    """A private option file with the [client] options, removed on exit."""
    fd, name = tempfile.mkstemp(prefix="tapir-mariadb-", suffix=".cnf")
    try:
        with os.fdopen(fd, "w") as f:
            f.write("[client]\n")
            for key, value in settings.client_options().items():
                # Quoted so that '#' or spaces in a password survive the option parser.
                escaped = value.replace("\\", "\\\\").replace('"', '\\"')
                f.write(f'{key}="{escaped}"\n')
        yield Path(name)
    finally:
        os.unlink(name)


def tool(program: str, cnf: Path | None, *args: str) -> list[str]:
    """The command line of a MariaDB tool, reading only ``cnf`` (no system my.cnf)."""
    first = [f"--defaults-file={cnf}"] if cnf is not None else ["--no-defaults"]
    return [program, *first, *args]


def run_tool(argv: Sequence[str], what: str, **kwargs: object) -> subprocess.CompletedProcess:
    """Run a tool to completion; PluginError with its last words when it fails."""
    try:
        done = subprocess.run(list(argv), capture_output=True, **kwargs)  # type: ignore[call-overload]
    except FileNotFoundError:
        raise PluginError(
            f"{argv[0]} is not installed (Debian packages mariadb-client and mariadb-backup)"
        ) from None
    if done.returncode != 0:
        raise PluginError(f"{what} failed ({argv[0]} exit {done.returncode}): {tail(done.stderr)}")
    return done


def tail(data: bytes | str | None, lines: int = 6) -> str:
    """The last lines of a tool's error output, for a message."""
    if not data:
        return "no error output"
    text = data.decode(errors="replace") if isinstance(data, bytes) else data
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])
