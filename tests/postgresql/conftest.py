"""Fixtures of the PostgreSQL plugin tests: real throw-away servers set up for replication."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
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


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[PgServer]:
    """A fresh server per test (tests write, kill and restore it)."""
    server = start_replication_server(tmp_path)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sql(pg: PgServer) -> Callable[..., list[tuple]]:
    """Run one statement as the superuser on ``pg`` (database ``postgres`` by default)."""

    def run(statement: str, params: tuple = (), dbname: str = "postgres") -> list[tuple]:
        url = pg.admin_url.rsplit("/", 1)[0] + "/" + dbname
        with psycopg.connect(url, autocommit=True) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else []

    return run


def register(app: Appliance, pg: PgServer, name: str = "db1", **changes: object) -> None:
    options: dict[str, object] = {"user": TAPIR_USER}
    password = changes.pop("password", TAPIR_PASSWORD)
    options.update(changes)
    app.register_endpoint(
        name, "postgresql", f"127.0.0.1:{pg.port}", options=options, password=str(password)
    )


@pytest.fixture
def app(tmp_path: Path, pg: PgServer) -> Iterator[Appliance]:
    """An appliance with the postgresql and disk plugins, a disk pool and ``pg`` as db1."""
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    catalog.upgrade()
    settings = Settings(home=tmp_path / "home", database_url=catalog.url)
    security.create_master_key(settings)
    registry = load_plugins(extra=[postgresql_plugin, disk_plugin], entry_points=False)
    assert not registry.failures, registry.failures
    appliance = Appliance(settings, catalog, registry)
    appliance.create_pool("default", "disk", path=tmp_path / "pool")
    register(appliance, pg)
    yield appliance
    appliance.close()


class Restored:
    """Restored data directories started by a test; stopped when the test ends."""

    def __init__(self, base: Path, pg: PgServer) -> None:
        self.base = base
        self.pg = pg

    def target(self, name: str) -> Path:
        return self.base / name

    def query(self, target: Path, port: int, statement: str, dbname: str = "postgres") -> list:
        with psycopg.connect(
            host=str(target), port=port, user="postgres", dbname=dbname, autocommit=True
        ) as conn:
            return conn.execute(statement).fetchall()

    def stop_all(self) -> None:
        """Stop every server the plugin started below ``base`` (queried or not)."""
        for target in self.base.iterdir():
            if (target / "postmaster.pid").exists():
                self.pg.pg_ctl_at(target, "-m", "immediate", "-w", "stop")


@pytest.fixture
def restored(pg: PgServer) -> Iterator[Restored]:
    """A folder the server's system user can reach, for restored data directories."""
    base = Path(tempfile.mkdtemp(prefix="tapir-pgrestore-", dir="/tmp"))
    os.chmod(base, 0o711)
    helper = Restored(base, pg)
    try:
        yield helper
    finally:
        helper.stop_all()
        shutil.rmtree(base, ignore_errors=True)
