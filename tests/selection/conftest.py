"""Fixtures of the selection tests: a scriptable hypervisor plugin on the real engine,
with a real disk pool, on SQLite and on a real PostgreSQL server.

The vcsim fixtures of tests/vmware are re-exported for the end-to-end test with a
real (simulated) vCenter.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pg_server import create_database

# The vmware folder's fixtures (a real vcsim per test), for test_vmware_selection.py.
from vmware.conftest import vcsim, vcsim_binary, vsphere  # noqa: F401

from tapir.appliance import security
from tapir.appliance.catalog.database import Catalog
from tapir.appliance.config import Settings
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_api import (
    AssetInfo,
    BackupRequest,
    BackupResult,
    ConnectionFailed,
    EndpointInfo,
    HypervisorPlugin,
    Item,
    ItemKind,
    OptionSpec,
    PluginContext,
    PluginError,
    hookimpl,
)
from tapir.appliance.plugin_manager import load_plugins
from tapir.plugins.disk import plugin as disk_plugin
from tapir.plugins.files import plugin as files_plugin

PASSWORD = "Pw-4sel-77"


class ScriptedHypervisor(HypervisorPlugin):
    """A hypervisor whose inventory a test edits: ``vms[external id] = (name, metadata)``.

    A backup stores one small file naming the VM, through the real engine.
    """

    name = "scripthv"
    title = "Scripted hypervisor"

    def __init__(self) -> None:
        self.vms: dict[str, tuple[str, dict[str, Any]]] = {}
        self.down = False
        self.discoveries = 0
        self.discovered = threading.Event()
        self.backed_up: list[str] = []
        self.fail_backup_of: str | None = None

    def endpoint_options(self) -> list[OptionSpec]:
        return [
            OptionSpec("user", "str", required=True),
            OptionSpec("password_secret", "secret", required=True),
        ]

    def test_connection(self, endpoint: EndpointInfo, ctx: PluginContext) -> None:
        self._login(endpoint, ctx)

    def _login(self, endpoint: EndpointInfo | None, ctx: PluginContext) -> None:
        assert endpoint is not None
        if self.down:
            raise ConnectionFailed(f"cannot reach {endpoint.address}: connection refused")
        if ctx.read_secret(str(endpoint.options["password_secret"])) != PASSWORD:
            raise ConnectionFailed("wrong user name or password")

    def discover(self, endpoint: EndpointInfo | None, ctx: PluginContext) -> list[AssetInfo]:
        self._login(endpoint, ctx)
        self.discoveries += 1
        self.discovered.set()
        return [AssetInfo("vm", n, i, dict(meta)) for i, (n, meta) in sorted(self.vms.items())]

    def backup(self, request: BackupRequest, sink: Any, ctx: PluginContext) -> BackupResult:
        name = request.asset.name
        if name == self.fail_backup_of:
            raise PluginError(f"{name}: snapshot failed")
        data = f"disk of {name} in {request.asset.metadata.get('folder')}".encode()
        item = Item(path=b"vm.txt", kind=ItemKind.FILE, mode=0o100644, size=len(data))
        writer = sink.open_file(item)
        writer.write(data)
        writer.close()
        self.backed_up.append(name)
        return BackupResult()

    def restore(self, request: Any, source: Any, ctx: PluginContext) -> Any:
        raise PluginError("not needed here")


class HvHooks:
    __name__ = "scripthv_hooks"

    def __init__(self) -> None:
        self.plugin = ScriptedHypervisor()

    @hookimpl
    def tapir_hypervisor_plugins(self) -> list[HypervisorPlugin]:
        return [self.plugin]


def vm_meta(folder: str, power: str = "poweredOn", **extra: Any) -> dict[str, Any]:
    """The attribute vocabulary, as a hypervisor plugin fills it in."""
    return {"folder": folder, "power_state": power, "cluster": "C1", "host": "h1", **extra}


@pytest.fixture
def hv() -> HvHooks:
    return HvHooks()


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Catalog]:
    """A migrated catalog on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'catalog.db'}"
    else:
        url = create_database(request.getfixturevalue("pg_url"), f"s_{uuid.uuid4().hex[:16]}")
    cat = Catalog(url)
    cat.upgrade()
    try:
        yield cat
    finally:
        cat.dispose()


@pytest.fixture
def sqlite_catalog(tmp_path: Path) -> Iterator[Catalog]:
    cat = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    cat.upgrade()
    try:
        yield cat
    finally:
        cat.dispose()


def make_app(home: Path, catalog: Catalog, hv: HvHooks) -> Appliance:
    settings = Settings(home=home, database_url=catalog.url)
    security.create_master_key(settings)
    registry = load_plugins(extra=[hv, disk_plugin, files_plugin], entry_points=False)
    assert not registry.failures, registry.failures
    return Appliance(settings, catalog, registry)


def setup_app(app: Appliance, pool_path: Path, **endpoint: Any) -> Appliance:
    """A disk pool 'pool' and the endpoint 'hv1' of the scripted hypervisor."""
    app.create_pool("pool", "disk", path=pool_path)
    app.register_endpoint(
        "hv1", "scripthv", "hv1.example", options={"user": "u"}, password=PASSWORD, **endpoint
    )
    return app


@pytest.fixture
def app(tmp_path: Path, catalog: Catalog, hv: HvHooks) -> Iterator[Appliance]:
    """An appliance on both backends with a disk pool and the endpoint 'hv1'."""
    appliance = setup_app(make_app(tmp_path / "home", catalog, hv), tmp_path / "pool")
    yield appliance
    appliance.close()


@pytest.fixture
def lite_app(tmp_path: Path, sqlite_catalog: Catalog, hv: HvHooks) -> Iterator[Appliance]:
    """The same on SQLite only (for tests of logic rather than of the database)."""
    appliance = setup_app(make_app(tmp_path / "home", sqlite_catalog, hv), tmp_path / "pool")
    yield appliance
    appliance.close()


def log_of(app: Appliance, run_id: int) -> list[str]:
    return [f"{level} {message}" for _, level, message in app.run_log(run_id)]


LogOf = Callable[[Appliance, int], list[str]]
