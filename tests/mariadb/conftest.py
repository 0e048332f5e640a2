"""Fixtures of the mariadb plugin tests: a real throw-away MariaDB server and an appliance."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from mariadb_server import MariaDBServer

from tapir.appliance import security
from tapir.appliance.catalog.database import Catalog
from tapir.appliance.config import Settings
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_manager import load_plugins
from tapir.plugins.disk import plugin as disk_plugin
from tapir.plugins.mariadb import plugin as mariadb_plugin

USER = "tapir"
PASSWORD = "s3cret #pw"  # a '#' and a space: the option file must quote them


@pytest.fixture
def server() -> Iterator[MariaDBServer]:
    """A private MariaDB server with binary logging and a ``shop`` database."""
    # Short base folder: a unix socket path has at most 107 bytes.
    base = Path(tempfile.mkdtemp(prefix="tapir-mdb-test-"))
    srv = MariaDBServer.create(base)
    try:
        srv.add_user(USER, PASSWORD)
        srv.execute("CREATE DATABASE shop")
        srv.execute(
            "CREATE TABLE shop.orders (id INT PRIMARY KEY AUTO_INCREMENT, "
            "item VARCHAR(40) NOT NULL, written DATETIME(6) NOT NULL)"
        )
        srv.execute("CREATE TABLE shop.customers (id INT PRIMARY KEY, name VARCHAR(40))")
        yield srv
    finally:
        srv.kill()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def app(tmp_path: Path, server: MariaDBServer) -> Iterator[Appliance]:
    """An appliance with the mariadb and disk plugins, a disk pool and the server's endpoint."""
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    catalog.upgrade()
    settings = Settings(home=tmp_path / "home", database_url=catalog.url)
    security.create_master_key(settings)
    registry = load_plugins(extra=[mariadb_plugin, disk_plugin], entry_points=False)
    assert not registry.failures, registry.failures
    appliance = Appliance(settings, catalog, registry)
    appliance.create_pool("default", "disk", path=tmp_path / "pool")
    appliance.register_endpoint(
        "db1",
        "mariadb",
        f"127.0.0.1:{server.port}",
        options={"user": USER, "freeze_timeout": 30},
        password=PASSWORD,
    )
    yield appliance
    appliance.close()


@pytest.fixture
def job(app: Appliance) -> str:
    """A job protecting the server, with logical dumps at every full backup."""
    report = app.discover_endpoint("db1")
    assert report.added == ["db1"], report
    app.create_job("db", "mariadb", "default", selection={"assets": ["db1"]}, endpoint="db1")
    return "db"
