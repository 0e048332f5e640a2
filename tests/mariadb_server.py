"""A throw-away MariaDB server for tests, from Debian's packages.

``MariaDBServer.create(base)`` initialises a data directory under ``base`` with
``mariadb-install-db`` and starts ``mariadbd`` on 127.0.0.1 at a free port, its
unix socket in ``base`` (never the system's), with binary logging on. ``root``
connects through the socket without a password; ``add_user`` makes the
password-protected account a Tapir endpoint uses. ``MariaDBServer.start_on(datadir)``
starts a server on an existing data directory (a restored one). ``kill()``
ends the server at once (a server going away mid-backup); ``stop()`` shuts it
down. The server runs as the user running the tests (``--user=root`` as root).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pymysql

READY_WAIT = 60.0


def _ensure_installed() -> None:
    if shutil.which("mariadbd") and shutil.which("mariadb-backup"):
        return
    subprocess.run(
        [
            "apt-get",
            "install",
            "-y",
            "--no-install-recommends",
            "mariadb-server",
            "mariadb-backup",
            "mariadb-client",
        ],
        check=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class MariaDBServer:
    """One running mariadbd; see the module docstring."""

    base: Path
    datadir: Path
    port: int
    socket: Path
    process: subprocess.Popen[bytes] | None = None
    extra_args: list[str] = field(default_factory=list)

    @classmethod
    def create(cls, base: Path, extra_args: list[str] | None = None) -> MariaDBServer:
        """Initialise a new data directory in ``base`` and start a server on it."""
        _ensure_installed()
        base.mkdir(parents=True, exist_ok=True)
        datadir = base / "data"
        subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={datadir}",
                f"--user={pwd.getpwuid(os.geteuid()).pw_name}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        server = cls(base, datadir, free_port(), base / "mysqld.sock", None, extra_args or [])
        server.start()
        return server

    @classmethod
    def start_on(cls, datadir: Path, base: Path) -> MariaDBServer:
        """Start a server on an existing data directory (e.g. one a restore produced)."""
        _ensure_installed()
        base.mkdir(parents=True, exist_ok=True)
        server = cls(base, datadir, free_port(), base / "mysqld.sock")
        server.start()
        return server

    def start(self) -> None:
        """Start mariadbd and wait until it accepts connections."""
        log = open(self.base / "server.log", "ab")  # noqa: SIM115 - the server's stderr
        self.process = subprocess.Popen(
            [
                "mariadbd",
                "--no-defaults",
                f"--datadir={self.datadir}",
                f"--socket={self.socket}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--pid-file={self.base / 'mysqld.pid'}",
                f"--user={pwd.getpwuid(os.geteuid()).pw_name}",
                "--log-bin=mariadb-bin",
                "--server-id=1",
                "--binlog-format=ROW",
                "--innodb-buffer-pool-size=32M",
                "--innodb-log-file-size=16M",
                "--innodb-flush-log-at-trx-commit=2",
                "--skip-name-resolve",
                *self.extra_args,
            ],
            stdout=log,
            stderr=log,
        )
        log.close()
        deadline = time.monotonic() + READY_WAIT
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"mariadbd exited with {self.process.returncode}: "
                    + (self.base / "server.log").read_text(errors="replace")[-3000:]
                )
            try:
                self.root().close()
                return
            except pymysql.err.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def root(self, database: str | None = None) -> pymysql.connections.Connection:
        """A root connection through the private socket (autocommit)."""
        return pymysql.connect(
            unix_socket=str(self.socket), user="root", database=database, autocommit=True
        )

    def execute(self, sql: str, *args: object, database: str | None = None) -> list[tuple]:
        """Run one statement as root; returns its rows."""
        conn = self.root(database)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args or None)
                return list(cur.fetchall())
        finally:
            conn.close()

    def add_user(self, user: str, password: str) -> None:
        """An account for Tapir, reachable over TCP and the socket, with every privilege."""
        for host in ("127.0.0.1", "localhost"):
            self.execute(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY %s", password)
            self.execute(f"GRANT ALL ON *.* TO '{user}'@'{host}'")

    def kill(self) -> None:
        """End the server at once (SIGKILL): a server that goes away."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        """Shut the server down cleanly."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.kill()
