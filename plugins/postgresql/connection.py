"""Sessions with a server, and PostgreSQL's client programs run against it.

Errors become :class:`ConnectionFailed` (cannot log in: wrong password, server
down, TLS refused) or :class:`PluginError` with the server's own words, so an
operator reads what to fix.
"""

from __future__ import annotations

import glob
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from tapir.appliance.plugin_api import ConnectionFailed, PluginError

from .options import ConnectionSettings


def _explain(settings: ConnectionSettings, message: str) -> str:
    lowered = message.lower()
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        return f"{settings.address}: wrong user name or password for {settings.user!r}"
    if "pg_hba.conf" in lowered:
        return f"{settings.address}: the server's pg_hba.conf refuses {settings.user!r}: {message}"
    return f"{settings.address}: {message.strip()}"


def open_connection(settings: ConnectionSettings, dbname: str | None = None) -> psycopg.Connection:
    """An autocommit session the caller closes; ConnectionFailed when the server refuses."""
    try:
        return psycopg.connect(**settings.conninfo(dbname), autocommit=True)  # type: ignore[arg-type]
    except psycopg.OperationalError as exc:
        raise ConnectionFailed(_explain(settings, str(exc))) from None


@contextmanager
def connect(
    settings: ConnectionSettings, dbname: str | None = None
) -> Iterator[psycopg.Connection]:
    """An autocommit session, closed after the block; errors as in :func:`open_connection`."""
    conn = open_connection(settings, dbname)
    try:
        yield conn
    except psycopg.OperationalError as exc:
        raise PluginError(f"{settings.address}: connection lost: {str(exc).strip()}") from None
    except psycopg.Error as exc:
        raise PluginError(f"{settings.address}: {str(exc).strip()}") from None
    finally:
        conn.close()


def bindir(major: int | None = None) -> Path:
    """The client programs: the newest installed, or exactly ``major``'s when given.

    pg_dump and pg_basebackup read servers up to their own version; pg_ctl must be
    the version of the data directory it starts.
    """
    found = sorted(
        (Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/pg_basebackup")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if major is not None:
        found = [p for p in found if p.parent.name == str(major)]
        if not found:
            raise PluginError(
                f"PostgreSQL {major}'s programs are not installed "
                f"(install the Debian package postgresql-{major})"
            )
    if not found:
        raise PluginError("PostgreSQL's client programs are missing (install postgresql-client)")
    return found[-1]


def tool_env(settings: ConnectionSettings) -> dict[str, str]:
    """The environment of a client program: untranslated messages, libpq variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(settings.environment())
    env["LC_ALL"] = "C"  # the plugin reads their messages
    return env


def run_tool(
    settings: ConnectionSettings, program: str, *args: str, major: int | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a client program to its end; PluginError with its message when it fails."""
    done = subprocess.run(
        [str(bindir(major) / program), *args],
        env=tool_env(settings),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise tool_error(settings, program, done.stderr)
    return done


def tool_error(settings: ConnectionSettings, program: str, stderr: str) -> Exception:
    """The error for a failed client program, from its last lines."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    message = "; ".join(lines[-3:]) or "failed without a message"
    text = _explain(settings, message)
    lowered = message.lower()
    if "password authentication failed" in lowered or "could not connect" in lowered:
        return ConnectionFailed(f"{program}: {text}")
    return PluginError(f"{program}: {text}")
