"""A throw-away PostgreSQL server for tests, from Debian's packages.

``start_postgres(tmpdir)`` initialises a cluster, starts it on 127.0.0.1 at a free
port (its unix socket in the cluster's folder, never the system's) and returns the
URL of its ``postgres`` database and a ``stop()`` that shuts it down and removes it.
initdb refuses to run as root, so as root the cluster belongs to the ``postgres``
system user. ``create_database(url, name)`` gives each test an empty database.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL's initdb not found after installing postgresql")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_postgres(tmpdir: Path) -> tuple[str, Callable[[], None]]:
    """Start a private PostgreSQL server; returns (url, stop)."""
    bindir = _bindir()
    as_root = os.geteuid() == 0
    if as_root:
        # pytest's tmp folders are private to root; the server's user must reach its files.
        base = Path(tempfile.mkdtemp(prefix="tapir-pg-", dir="/tmp"))
        pw = pwd.getpwnam("postgres")
        os.chown(base, pw.pw_uid, pw.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    else:
        base = Path(tmpdir) / "pg"
        base.mkdir(parents=True)
        prefix = []
    data = base / "data"
    log = base / "server.log"
    port = _free_port()
    subprocess.run(
        [
            *prefix,
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    options = (
        f"-c listen_addresses=127.0.0.1 -p {port} -k {base} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
    )
    subprocess.run(
        [
            *prefix,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(log),
            "-w",
            "start",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )

    def stop() -> None:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        shutil.rmtree(base, ignore_errors=True)

    return f"postgresql://postgres@127.0.0.1:{port}/postgres", stop


def create_database(url: str, name: str) -> str:
    """Create an empty database ``name`` on the server of ``url``; returns its URL."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return url.rsplit("/", 1)[0] + "/" + name
