"""Fixtures of the engine tests: a catalog on SQLite and on a real PostgreSQL server,
and an appliance built on it with the in-memory test plugins."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# tests/ is on sys.path: this folder is a package and tests/ is not (pytest's rootdir rule).
from pg_server import create_database

from tapir.appliance import security
from tapir.appliance.catalog.database import Catalog
from tapir.appliance.config import Settings
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_manager import load_plugins

from .fakes import FakePlugins


def _catalog_url(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    server = request.getfixturevalue("pg_url")
    return create_database(server, f"t_{uuid.uuid4().hex[:16]}")


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty catalog database, on each backend."""
    return _catalog_url(request.param, tmp_path, request)


@pytest.fixture
def catalog(catalog_url: str) -> Iterator[Catalog]:
    """A migrated, empty catalog on SQLite and on PostgreSQL."""
    cat = Catalog(catalog_url)
    cat.upgrade()
    try:
        yield cat
    finally:
        cat.dispose()


@pytest.fixture
def sqlite_catalog(tmp_path: Path) -> Iterator[Catalog]:
    """A migrated SQLite catalog (for tests about logic, not about the database)."""
    cat = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    cat.upgrade()
    try:
        yield cat
    finally:
        cat.dispose()


@pytest.fixture
def fake_plugins() -> FakePlugins:
    return FakePlugins()


def make_app(home: Path, catalog: Catalog, plugins: FakePlugins) -> Appliance:
    settings = Settings(home=home, database_url=catalog.url)
    security.create_master_key(settings)
    registry = load_plugins(extra=[plugins], entry_points=False)
    assert not registry.failures, registry.failures
    return Appliance(settings, catalog, registry)


@pytest.fixture
def app(tmp_path: Path, catalog: Catalog, fake_plugins: FakePlugins) -> Appliance:
    """An appliance on both catalog backends, with a 'mem' pool and a 'job1' job."""
    appliance = make_app(tmp_path / "home", catalog, fake_plugins)
    appliance.create_pool("mem", "memdisk")
    appliance.create_job("job1", "fakefiles", "mem", timezone="UTC")
    fake_plugins.files.files = {b"a.txt": b"alpha" * 1000, b"b/c.bin": bytes(range(256)) * 300}
    return appliance
