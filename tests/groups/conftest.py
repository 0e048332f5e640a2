"""Fixtures of the consistency group tests: two real PostgreSQL servers, one writer.

The writer emulates a distributed transaction with a global sequence: each step
writes the same number to both servers, holding the shared advisory lock
``FREEZE_LOCK`` on both for the whole transaction, the protocol the endpoints'
``freeze_lock`` option expects (docs/plugins/postgresql.md).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pg_server import TAPIR_PASSWORD, TAPIR_USER, PgServer, start_replication_server

from tapir.appliance import security
from tapir.appliance.catalog.database import Catalog
from tapir.appliance.config import Settings
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_manager import load_plugins
from tapir.plugins.disk import plugin as disk_plugin
from tapir.plugins.postgresql import plugin as postgresql_plugin

pytestmark = pytest.mark.postgres

FREEZE_LOCK = 4242
#: Seconds a freeze waits for the lock before it gives up: db2 gives up inside a 10 s
#: window, db1 waits longer than a short window (its freeze then returns late).
FREEZE_TIMEOUTS = {"db1": 30, "db2": 2}


def sql(server: PgServer, statement: str, params: tuple = ()) -> list[tuple]:
    """One statement as the superuser, autocommit."""
    with psycopg.connect(server.admin_url, autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[PgServer, PgServer]]:
    """Two fresh servers, each with the table ``seq``."""
    started: list[PgServer] = []
    try:
        for i in (1, 2):
            server = start_replication_server(tmp_path / f"s{i}")
            started.append(server)
            sql(server, "CREATE TABLE seq (n bigint PRIMARY KEY)")
        yield started[0], started[1]
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def app(tmp_path: Path, servers: tuple[PgServer, PgServer]) -> Iterator[Appliance]:
    """An appliance with a disk pool, both servers as endpoints db1 and db2 (freeze_lock
    set) and a physical job of the same name for each."""
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    catalog.upgrade()
    settings = Settings(home=tmp_path / "home", database_url=catalog.url)
    security.create_master_key(settings)
    registry = load_plugins(extra=[postgresql_plugin, disk_plugin], entry_points=False)
    assert not registry.failures, registry.failures
    appliance = Appliance(settings, catalog, registry)
    appliance.create_pool("default", "disk", path=tmp_path / "pool")
    for name, server in zip(("db1", "db2"), servers, strict=True):
        appliance.register_endpoint(
            name,
            "postgresql",
            f"127.0.0.1:{server.port}",
            options={
                "user": TAPIR_USER,
                "freeze_lock": FREEZE_LOCK,
                "freeze_timeout": FREEZE_TIMEOUTS[name],
            },
            password=TAPIR_PASSWORD,
        )
        appliance.create_job(name, "postgresql", "default", endpoint=name)
    yield appliance
    appliance.close()


class Writer:
    """One stream of distributed transactions: number n goes to both servers or neither."""

    def __init__(self, servers: tuple[PgServer, PgServer]) -> None:
        self.urls = [s.admin_url for s in servers]
        self.committed = 0  # numbers 0..committed-1 are on both servers
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._progress = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self.committed

    def wait_for(self, count: int) -> None:
        """Block until ``count`` numbers are committed (the writer never stops by itself)."""
        with self._progress:
            while self.committed < count and self.error is None:
                self._progress.wait(1.0)
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            conns = [psycopg.connect(url) for url in self.urls]
            try:
                self._loop(conns)
            finally:
                for c in conns:
                    c.close()
        except BaseException as exc:
            self.error = exc
            with self._progress:
                self._progress.notify_all()

    def _loop(self, conns: list[psycopg.Connection]) -> None:
        n = 0
        while not self._stop.is_set():
            # The shared lock on every server first, without waiting: a writer that waited
            # for a freeze on one server while holding another's lock would hold that
            # server's freeze back until its lock_timeout.
            got = [
                c.execute("SELECT pg_try_advisory_xact_lock_shared(%s)", (FREEZE_LOCK,)).fetchone()[
                    0
                ]  # type: ignore[index]
                for c in conns
            ]
            if not all(got):
                for c in conns:
                    c.rollback()
                time.sleep(0.005)
                continue
            for c in conns:
                c.execute("INSERT INTO seq (n) VALUES (%s)", (n,))
            conns[0].commit()
            # A distributed commit is not atomic: the gap makes a cut taken without the
            # freeze lock split a transaction (number n on one server only) most times.
            time.sleep(0.02)
            conns[1].commit()
            n += 1
            with self._progress:
                self.committed = n
                self._progress.notify_all()


@pytest.fixture
def restore_dir() -> Iterator[Path]:
    """A folder the servers' system user can reach, for the restored data directories."""
    base = Path(tempfile.mkdtemp(prefix="tapir-grouprestore-", dir="/tmp"))
    os.chmod(base, 0o711)
    try:
        yield base
    finally:
        for data in base.glob("*/*"):
            if (data / "postmaster.pid").exists():
                _stop_restored(data)
        shutil.rmtree(base, ignore_errors=True)


def _stop_restored(data: Path) -> None:
    import subprocess

    from pg_server import _bindir

    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run(
        [*prefix, str(_bindir() / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def restored_dir_numbers(data: Path, port: int) -> list[int]:
    """The numbers in ``seq`` of a restored server started on ``data`` (its socket there)."""
    with psycopg.connect(host=str(data), port=port, user="postgres", dbname="postgres") as conn:
        return [r[0] for r in conn.execute("SELECT n FROM seq ORDER BY n").fetchall()]
