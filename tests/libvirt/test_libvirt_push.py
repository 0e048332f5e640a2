"""Push mode: QEMU writes the backup copies into a folder, Tapir reads and removes them."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from libvirt_helpers import MiB, guest_write, live_disk, qemu_img_compare, request

from tapir.appliance import security
from tapir.appliance.catalog.database import Catalog
from tapir.appliance.config import Settings
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_api import BackupLevel, PluginError
from tapir.appliance.plugin_api.testing.memory_sink import MemorySink
from tapir.appliance.plugin_manager import load_plugins
from tapir.plugins.disk import plugin as disk_plugin
from tapir.plugins.libvirt import plugin as libvirt_plugin

PREFILLED = ((0x11, 0, MiB), (0x22, 8 * MiB, 512 * 1024))


def _zero(dom, offset: int, length: int) -> None:
    from libvirt_qemu import VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP, qemuMonitorCommand

    qemuMonitorCommand(
        dom,
        f'qemu-io -d /machine/peripheral/virtio-disk0/virtio-backend "write -z {offset} {length}"',
        VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP,
    )


@pytest.fixture
def push_folder(libvirtd):
    folder = libvirtd.root / "images" / "push"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture
def app(tmp_path: Path, libvirtd, push_folder) -> Iterator[Appliance]:
    """An appliance with a disk pool and the libvirtd as a push-mode endpoint."""
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    catalog.upgrade()
    settings = Settings(home=tmp_path / "home", database_url=catalog.url)
    security.create_master_key(settings)
    registry = load_plugins(extra=[libvirt_plugin, disk_plugin], entry_points=False)
    appliance = Appliance(settings, catalog, registry)
    appliance.create_pool("default", "disk", path=tmp_path / "pool")
    options = {"backup_mode": "push", "push_dir": str(push_folder)}
    appliance.register_endpoint("kvm", "libvirt", libvirtd.uri, options=options)
    yield appliance
    appliance.close()


def test_push_full_and_incremental_restore_equal_to_the_live_disk(
    app, make_domain, push_folder, tmp_path
):
    dom = make_domain(writes=PREFILLED)
    app.discover_endpoint("kvm")
    app.create_job("vms", "libvirt", "default", selection={"assets": [dom.name()]}, endpoint="kvm")
    full = app.run_job("vms", level="full")
    assert full.state == "succeeded", full.error
    assert list(push_folder.iterdir()) == []  # the copy is removed once read

    guest_write(dom, 0xAB, 2 * MiB, 64 * 1024)
    _zero(dom, 8 * MiB, 64 * 1024)  # zeroing prefilled data is a change too
    incr = app.run_job("vms", level="incremental")
    assert incr.state == "succeeded", incr.error
    assert list(push_folder.iterdir()) == []

    points = {rp.level: rp for rp in app.recovery_points(job="vms")}
    assert points["full"].meta["backup_mode"] == "push"
    (disk,) = points["full"].meta["disks"]
    assert disk["mode"] == "full" and disk["bytes_changed"] == MiB + 512 * 1024
    (disk,) = points["incremental"].meta["disks"]
    assert disk["mode"] == "incremental" and disk["bytes_changed"] == 128 * 1024
    assert disk["bytes_read"] == 128 * 1024  # the engine merged them with the parent's chunks

    target = tmp_path / "restored"
    app.restore(points["incremental"].id, target=target, options={"format": "raw"})
    dom.suspend()
    try:
        restored = target / f"{dom.name()}-vda.raw"
        compared = qemu_img_compare(restored, "raw", live_disk(dom), "qcow2")
    finally:
        dom.resume()
    assert compared.returncode == 0, compared.stdout + compared.stderr


def test_push_incremental_refuses_reads_outside_the_changes(
    plugin, endpoint, ctx, make_domain, push_folder
):
    pushing = dataclasses.replace(
        endpoint, options={"backup_mode": "push", "push_dir": str(push_folder)}
    )
    dom = make_domain(writes=PREFILLED)
    full = MemorySink()
    plugin.backup(request(dom, pushing), full, ctx)
    guest_write(dom, 0xAB, 2 * MiB, 64 * 1024)
    # The memory sink reads whole 4 MiB chunks, as a medium without random reads does.
    incr = MemorySink(parent=full.as_parent())
    with pytest.raises(PluginError, match="outside the changed areas"):
        plugin.backup(request(dom, pushing, BackupLevel.INCREMENTAL), incr, ctx)
    assert list(push_folder.iterdir()) == []


def test_push_mode_needs_a_folder(plugin, endpoint, ctx, make_domain):
    dom = make_domain()
    pushing = dataclasses.replace(endpoint, options={"backup_mode": "push"})
    with pytest.raises(PluginError, match="push mode needs push_dir"):
        plugin.backup(request(dom, pushing), MemorySink(), ctx)
