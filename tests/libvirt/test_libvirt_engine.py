"""The libvirt plugin inside the real engine: endpoint, discovery, job runs, restore."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest
from libvirt_helpers import MiB, guest_write, live_disk, qemu_img_compare

from tapir.appliance import security
from tapir.appliance.catalog.database import Catalog
from tapir.appliance.config import Settings
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_manager import load_plugins
from tapir.plugins.disk import plugin as disk_plugin
from tapir.plugins.libvirt import checkpoints
from tapir.plugins.libvirt import plugin as libvirt_plugin
from tapir.plugins.libvirt.nbd_client import NbdExport

PREFILLED = ((0x11, 0, MiB), (0x22, 8 * MiB, 512 * 1024))


@pytest.fixture
def app(tmp_path: Path, libvirtd) -> Iterator[Appliance]:
    """An appliance with the libvirt and disk plugins, a disk pool and the private libvirtd."""
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    catalog.upgrade()
    settings = Settings(home=tmp_path / "home", database_url=catalog.url)
    security.create_master_key(settings)
    registry = load_plugins(extra=[libvirt_plugin, disk_plugin], entry_points=False)
    assert not registry.failures, registry.failures
    appliance = Appliance(settings, catalog, registry)
    appliance.create_pool("default", "disk", path=tmp_path / "pool")
    appliance.register_endpoint("kvm", "libvirt", libvirtd.uri, options={})
    yield appliance
    appliance.close()


def _job(app: Appliance, dom) -> None:
    app.create_job("vms", "libvirt", "default", selection={"assets": [dom.name()]}, endpoint="kvm")


def test_full_and_incremental_runs_move_only_data_and_restore_the_live_disk(
    app, make_domain, tmp_path
):
    dom = make_domain(writes=PREFILLED)
    report = app.discover_endpoint("kvm")
    assert dom.name() in report.added
    _job(app, dom)

    full = app.run_job("vms", level="full")
    assert full.state == "succeeded", full.error
    # The disk's allocated clusters, plus the domain XML stored beside it.
    xml_size = len(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).encode())
    assert full.bytes_read == MiB + 512 * 1024 + xml_size
    guest_write(dom, 0xAB, MiB, 64 * 1024)
    guest_write(dom, 0xCD, 20 * MiB, 128 * 1024)
    incr = app.run_job("vms", level="incremental")
    assert incr.state == "succeeded", incr.error
    assert incr.bytes_read == 192 * 1024 + xml_size

    points = {rp.level: rp for rp in app.recovery_points(job="vms")}
    assert set(points) == {"full", "incremental"}
    assert points["full"].meta["disks"][0]["bytes_read"] == MiB + 512 * 1024
    assert points["incremental"].meta["disks"][0]["bytes_read"] == 192 * 1024
    assert points["incremental"].meta["since_checkpoint"] == points["full"].meta["checkpoint"]
    target = tmp_path / "restored"
    app.restore(points["incremental"].id, target=target, options={"format": "qcow2"})
    dom.suspend()
    try:
        compared = qemu_img_compare(
            target / f"{dom.name()}-vda.qcow2", "qcow2", live_disk(dom), "qcow2"
        )
    finally:
        dom.resume()
    assert compared.returncode == 0, compared.stdout + compared.stderr


def test_domain_destroyed_mid_run_fails_the_run_with_no_point(
    app, make_domain, monkeypatch: pytest.MonkeyPatch
):
    dom = make_domain(writes=PREFILLED)
    app.discover_endpoint("kvm")
    _job(app, dom)
    original = NbdExport.read

    def read_then_destroy(self: NbdExport, offset: int, length: int) -> bytes:
        if dom.isActive():
            dom.destroy()
        return original(self, offset, length)

    monkeypatch.setattr(NbdExport, "read", read_then_destroy)
    run = app.run_job("vms", level="full")

    assert run.state == "failed"
    assert "NBD export" in (run.error or "")
    assert app.recovery_points(job="vms") == []
    assert checkpoints.names(dom) == []
