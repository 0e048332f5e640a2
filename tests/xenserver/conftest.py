"""Fixtures of the XenServer plugin tests: the XAPI test server (tests/xenserver/xapi_server.py)
with a small pool, and an appliance with the xenserver and disk plugins."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tapir.appliance import security
from tapir.appliance.catalog.database import Catalog
from tapir.appliance.config import Settings
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_manager import load_plugins
from tapir.plugins.disk import plugin as disk_plugin
from tapir.plugins.xenserver import plugin as xenserver_plugin

from .xapi_server import RunningXapi, start_xapi

MiB = 1024 * 1024
USER = "root"
# A password no catalog field could hold by accident (tests search for it).
PASSWORD = "pw-Xa9q-xapi"


def disk_bytes(size: int, seed: int) -> bytes:
    """Random bytes with an aligned 4 MiB run of zeros (stored as a hole)."""
    rng = random.Random(seed)
    data = bytearray(rng.randbytes(size))
    if size > 9 * MiB:
        data[4 * MiB : 8 * MiB] = bytes(4 * MiB)
    return bytes(data)


@dataclass
class Pool:
    """References of the objects the tests use."""

    server: RunningXapi
    host1: str
    host2: str
    local_sr: str
    iso_sr: str
    web: str  # VM on a CBT-capable SR, two disks
    web_disks: list[str]
    legacy: str  # VM on an SR without CBT
    legacy_disk: str


def build_pool(server: RunningXapi) -> Pool:
    x = server.xapi
    with x.lock:
        host1 = x.master
        host2 = x.add_host("xs-02", "127.0.0.1")
        local = x.add_sr("Local storage", cbt=True, default=True)
        old = x.add_sr("Old NFS", cbt=False)
        web = x.add_vm(
            "web01",
            host=host1,
            tags=["prod", "web"],
            other_config={"folder": "/prod/web", "XenCenter.CustomFields.owner": "ops"},
        )
        d0 = x.add_vdi(local, "web01 system", disk_bytes(10 * MiB + 512 * 1024, 1))
        d1 = x.add_vdi(local, "web01 data", disk_bytes(3 * MiB, 2))
        x.attach(web, d0, "0", bootable=True)
        x.attach(web, d1, "1")
        legacy = x.add_vm("legacy01", host=host2, power_state="Halted")
        ld = x.add_vdi(old, "legacy01 disk", disk_bytes(2 * MiB, 3))
        x.attach(legacy, ld, "0", bootable=True)
        # Not VMs to protect: a template, dom0, and an administrator's snapshot.
        x.add_vm("Debian 12 template", is_a_template=True, power_state="Halted")
        x.add_vm("Control domain on host: xs-master", host=host1, is_control_domain=True)
        x._VM_snapshot(web, "before-upgrade")
    return Pool(server, host1, host2, local, old, web, [d0, d1], legacy, ld)


@pytest.fixture
def nbd_enabled() -> bool:
    """Whether the pool serves VDIs over NBD (a test module overrides this fixture)."""
    return False


@pytest.fixture
def xapi(tmp_path: Path, nbd_enabled: bool) -> Iterator[RunningXapi]:
    """A fresh XAPI test server over HTTPS (self-signed certificate) per test."""
    server = start_xapi(tmp_path / "xapi", USER, PASSWORD, nbd=nbd_enabled)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pool(xapi: RunningXapi) -> Pool:
    return build_pool(xapi)


@pytest.fixture
def app(tmp_path: Path, pool: Pool) -> Iterator[Appliance]:
    """An appliance with the xenserver and disk plugins, a disk pool and the XAPI server."""
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    catalog.upgrade()
    settings = Settings(home=tmp_path / "home", database_url=catalog.url)
    security.create_master_key(settings)
    registry = load_plugins(extra=[xenserver_plugin, disk_plugin], entry_points=False)
    assert not registry.failures, registry.failures
    appliance = Appliance(settings, catalog, registry)
    appliance.create_pool("default", "disk", path=tmp_path / "pool")
    appliance.register_endpoint(
        "xen",
        "xenserver",
        pool.server.address,
        options={"user": USER, "fingerprint": pool.server.fingerprint},
        password=PASSWORD,
    )
    yield appliance
    appliance.close()
