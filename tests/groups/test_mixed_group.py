"""A group of a PostgreSQL and a MariaDB server written by one transaction stream: the
MariaDB member is marked by the binlog position read under its read lock, restored
with stop_position, and the restored pair holds the same transactions."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pymysql
import pytest
from mariadb_server import MariaDBServer
from pg_server import TAPIR_PASSWORD, TAPIR_USER, PgServer, free_port, start_replication_server

from tapir.appliance import security
from tapir.appliance.catalog.database import Catalog
from tapir.appliance.config import Settings
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_manager import load_plugins
from tapir.plugins.disk import plugin as disk_plugin
from tapir.plugins.mariadb import plugin as mariadb_plugin
from tapir.plugins.postgresql import plugin as postgresql_plugin

from .conftest import FREEZE_LOCK, restored_dir_numbers, sql

pytestmark = pytest.mark.postgres

MARIADB_LOCK_WAIT = 1  # seconds the writer's MariaDB statements wait for a freeze


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[PgServer, MariaDBServer]]:
    pg = start_replication_server(tmp_path / "pg")
    base = Path(tempfile.mkdtemp(prefix="tapir-mdb-grp-"))  # a socket path is short
    try:
        maria = MariaDBServer.create(base)
        try:
            maria.add_user("tapir", "pw")
            maria.execute("CREATE DATABASE shop")
            maria.execute("CREATE TABLE shop.seq (n BIGINT PRIMARY KEY) ENGINE=InnoDB")
            sql(pg, "CREATE TABLE seq (n bigint PRIMARY KEY)")
            yield pg, maria
        finally:
            maria.kill()
    finally:
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def app(tmp_path: Path, pair: tuple[PgServer, MariaDBServer]) -> Iterator[Appliance]:
    pg, maria = pair
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    catalog.upgrade()
    settings = Settings(home=tmp_path / "home", database_url=catalog.url)
    security.create_master_key(settings)
    registry = load_plugins(
        extra=[postgresql_plugin, mariadb_plugin, disk_plugin], entry_points=False
    )
    appliance = Appliance(settings, catalog, registry)
    appliance.create_pool("default", "disk", path=tmp_path / "pool")
    appliance.register_endpoint(
        "orders",
        "postgresql",
        f"127.0.0.1:{pg.port}",
        options={"user": TAPIR_USER, "freeze_lock": FREEZE_LOCK, "freeze_timeout": 8},
        password=TAPIR_PASSWORD,
    )
    appliance.register_endpoint(
        "stock",
        "mariadb",
        f"127.0.0.1:{maria.port}",
        options={"user": "tapir", "freeze_timeout": 30},
        password="pw",
    )
    appliance.create_job("orders", "postgresql", "default", endpoint="orders")
    appliance.create_job("stock", "mariadb", "default", endpoint="stock")
    yield appliance
    appliance.close()


class MixedWriter(threading.Thread):
    """Number n on MariaDB and PostgreSQL, or on neither.

    The PostgreSQL side holds the shared freeze lock for the whole transaction;
    MariaDB commits first, with a short lock wait, so a MariaDB freeze makes the
    writer roll back both sides instead of holding PostgreSQL's lock while it waits.
    """

    def __init__(self, pg: PgServer, maria: MariaDBServer) -> None:
        super().__init__(name="mixed-writer", daemon=True)
        self.pg, self.maria = pg, maria
        self.committed = 0
        self.error: BaseException | None = None
        self.stop_event = threading.Event()
        self.progress = threading.Condition()

    def run(self) -> None:
        try:
            with psycopg.connect(self.pg.admin_url) as p:
                m = pymysql.connect(unix_socket=str(self.maria.socket), user="root")
                try:
                    m.cursor().execute(f"SET SESSION lock_wait_timeout = {MARIADB_LOCK_WAIT}")
                    self._loop(p, m)
                finally:
                    m.close()
        except BaseException as exc:
            self.error = exc
        with self.progress:
            self.progress.notify_all()

    def _loop(self, p: psycopg.Connection, m: pymysql.connections.Connection) -> None:
        n = 0
        while not self.stop_event.is_set():
            got = p.execute("SELECT pg_try_advisory_xact_lock_shared(%s)", (FREEZE_LOCK,))
            if got.fetchone() != (True,):
                p.rollback()
                time.sleep(0.005)
                continue
            p.execute("INSERT INTO seq VALUES (%s)", (n,))
            try:
                m.begin()
                m.cursor().execute("INSERT INTO shop.seq VALUES (%s)", (n,))
                m.commit()
            except pymysql.err.OperationalError as exc:
                if exc.args[0] != 1205:  # lock wait timeout: the server is frozen
                    raise
                m.rollback()
                p.rollback()
                continue
            p.commit()
            n += 1
            with self.progress:
                self.committed = n
                self.progress.notify_all()

    def wait_for(self, count: int) -> None:
        with self.progress:
            while self.committed < count and self.error is None and self.is_alive():
                self.progress.wait(1.0)
        if self.error is not None:
            raise self.error

    def finish(self) -> int:
        self.stop_event.set()
        self.join()
        if self.error is not None:
            raise self.error
        return self.committed


def test_a_postgresql_and_a_mariadb_member_restore_to_one_moment(
    app: Appliance, pair: tuple[PgServer, MariaDBServer], restore_dir: Path, tmp_path: Path
) -> None:
    pg, maria = pair
    app.create_group("shop", ["orders", "stock"])
    writer = MixedWriter(pg, maria)
    writer.start()
    try:
        writer.wait_for(20)
        grun = app.run_group("shop")
        assert grun.state == "succeeded", grun.error
        writer.wait_for(writer.committed + 20)
    finally:
        final = writer.finish()
    marks = {m.job_name: m.mark for m in grun.members}
    file, pos = marks["stock"]["binlog"], marks["stock"]["position"]
    assert isinstance(pos, int) and str(file).startswith("mariadb-bin.")
    port = free_port()
    report = app.restore_group(
        "shop", restore_dir / "shop", member_options={"orders": {"port": port}}
    )
    assert not report.failed, [(m.job, m.error) for m in report.failed]
    by_job = {m.job: m for m in report.members}
    assert by_job["stock"].options["stop_position"] == f"{file}:{pos}"
    pg_numbers = restored_dir_numbers(restore_dir / "shop" / "orders", port)
    restored = MariaDBServer.start_on(restore_dir / "shop" / "stock", tmp_path / "mr")
    try:
        maria_numbers = [r[0] for r in restored.execute("SELECT n FROM shop.seq ORDER BY n")]
    finally:
        restored.stop()
    assert maria_numbers == pg_numbers
    assert pg_numbers and pg_numbers == list(range(len(pg_numbers)))
    assert len(pg_numbers) < final
