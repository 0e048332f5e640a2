"""Fixtures of the VMware plugin tests: a real vcsim (govmomi's simulator) over HTTPS."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pyVim.connect import Disconnect, SmartConnect
from vcsim_server import Vcsim, build_vcsim, start_vcsim

from tapir.appliance import security
from tapir.appliance.catalog.database import Catalog
from tapir.appliance.config import Settings
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_manager import load_plugins
from tapir.plugins.vmware import plugin as vmware_plugin
from tapir.plugins.vmware.connection import PinnedContext, normalize_fingerprint


@pytest.fixture(scope="session")
def vcsim_binary() -> Path:
    """The simulator, built once (cached by the source's hash across sessions)."""
    return build_vcsim()


@pytest.fixture
def vcsim(vcsim_binary: Path, tmp_path: Path) -> Iterator[Vcsim]:
    """A fresh simulated vCenter per test (tests change its inventory); stopped afterwards."""
    # A password no catalog field could hold by accident (tests search for it).
    server = start_vcsim(tmp_path / "vcsim", "-password", "pw-7Hq2-vcsim")
    try:
        yield server
    finally:
        server.stop()
    assert server.process.poll() is not None


@pytest.fixture
def vsphere(vcsim: Vcsim) -> Iterator[Any]:
    """A pyvmomi ServiceInstance on the simulator, for tests to change its inventory."""
    si = SmartConnect(
        host=vcsim.host,
        port=vcsim.port,
        user=vcsim.username,
        pwd=vcsim.password,
        sslContext=PinnedContext(normalize_fingerprint(vcsim.fingerprint)),
    )
    try:
        yield si
    finally:
        Disconnect(si)


@pytest.fixture
def make_appliance(tmp_path: Path) -> Iterator[Callable[[], Appliance]]:
    """An appliance on SQLite with the vmware plugin loaded (it is not an entry point yet)."""
    opened: list[Appliance] = []

    def make() -> Appliance:
        catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
        catalog.upgrade()
        settings = Settings(home=tmp_path / "home", database_url=catalog.url)
        security.create_master_key(settings)
        registry = load_plugins(extra=[vmware_plugin], entry_points=False)
        assert not registry.failures, registry.failures
        app = Appliance(settings, catalog, registry)
        opened.append(app)
        return app

    yield make
    for app in opened:
        app.close()
