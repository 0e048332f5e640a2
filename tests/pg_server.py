"""A throw-away PostgreSQL server for tests, from Debian's packages.

``start_postgres(tmpdir)`` initialises a cluster, starts it on 127.0.0.1 at a free
port (its unix socket in the cluster's folder, never the system's) and returns the
URL of its ``postgres`` database and a ``stop()`` that shuts it down and removes it.
initdb refuses to run as root, so as root the cluster belongs to the ``postgres``
system user. ``create_database(url, name)`` gives each test an empty database.

``start_replication_server(tmpdir)`` starts one set up for physical backups
(wal_level=replica, WAL senders and slots, checksums on) with a password-protected
replication user ``tapir`` allowed from 127.0.0.1, and returns a
:class:`PgServer` that can also be killed (a server going away mid-backup).
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
from dataclasses import dataclass, field
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


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a restored server)."""
    return _free_port()


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


#: The replication user of :func:`start_replication_server` and its password.
TAPIR_USER = "tapir"
TAPIR_PASSWORD = "pw-tapir-9Xk2"

_REPLICATION_HBA = """\
local all all trust
host all postgres 127.0.0.1/32 trust
host all all 127.0.0.1/32 scram-sha-256
host replication postgres 127.0.0.1/32 trust
host replication all 127.0.0.1/32 scram-sha-256
"""


@dataclass
class PgServer:
    """A throw-away server set up for replication: its address, folders and controls."""

    bindir: Path
    base: Path
    data: Path
    port: int
    prefix: list[str]
    options: str
    stopped: bool = field(default=False)

    @property
    def admin_url(self) -> str:
        """The superuser's URL (trusted from 127.0.0.1, for the tests' own statements)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def pg_ctl(self, *args: str, check: bool = True) -> None:
        subprocess.run(
            [*self.prefix, str(self.bindir / "pg_ctl"), "-D", str(self.data), *args],
            check=check,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def pg_ctl_at(self, data: Path, *args: str) -> None:
        """pg_ctl on another data directory (a restored copy), as the server's user."""
        subprocess.run(
            [*self.prefix, str(self.bindir / "pg_ctl"), "-D", str(data), *args],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def kill(self) -> None:
        """Stop the server at once, as a crash or a pulled cable would (files stay)."""
        self.pg_ctl("-m", "immediate", "-w", "stop", check=False)
        self.stopped = True

    def start(self) -> None:
        self.pg_ctl("-o", self.options, "-l", str(self.base / "server.log"), "-w", "start")
        self.stopped = False

    def stop(self) -> None:
        """Shut the server down and remove its folders."""
        self.kill()
        shutil.rmtree(self.base, ignore_errors=True)


def start_replication_server(tmpdir: Path) -> PgServer:
    """Start a private server ready for base backups, WAL streaming and PITR."""
    import psycopg

    bindir = _bindir()
    if os.geteuid() == 0:
        base = Path(tempfile.mkdtemp(prefix="tapir-pgr-", dir="/tmp"))
        pw = pwd.getpwnam("postgres")
        os.chown(base, pw.pw_uid, pw.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    else:
        base = Path(tmpdir) / "pgr"
        base.mkdir(parents=True)
        prefix = []
    data = base / "data"
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
            "--data-checksums",
            "--no-sync",
            "--no-instructions",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    hba = data / "pg_hba.conf"
    hba.write_text(_REPLICATION_HBA)
    port = _free_port()
    options = (
        f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off "
        "-c wal_level=replica -c max_wal_senders=10 -c max_replication_slots=10 "
        "-c wal_keep_size=0 -c max_wal_size=64MB -c min_wal_size=32MB "
        "-c password_encryption=scram-sha-256"
    )
    server = PgServer(
        bindir=bindir, base=base, data=data, port=port, prefix=prefix, options=options
    )
    server.start()
    with psycopg.connect(server.admin_url, autocommit=True) as conn:
        conn.execute(
            f"CREATE ROLE {TAPIR_USER} LOGIN REPLICATION PASSWORD '{TAPIR_PASSWORD}' "
            "IN ROLE pg_read_all_data, pg_read_all_stats, pg_checkpoint"
        )
        for function in (
            "pg_backup_start(text, boolean)",
            "pg_backup_stop(boolean)",
            "pg_create_restore_point(text)",
            "pg_switch_wal()",
        ):
            conn.execute(f"GRANT EXECUTE ON FUNCTION {function} TO {TAPIR_USER}")
    return server
