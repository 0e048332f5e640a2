"""Full VMware backups through the real engine against vcsim: snapshot, HTTPS disk read,
byte-for-byte read-back, and the snapshot removed whatever happens."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from vcsim_server import Vcsim

from tapir.appliance.datapath.reader import RecoveryPointReader
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_api import ItemKind, PluginError
from tapir.plugins.vmware import snapshots
from tapir.plugins.vmware.datastore import DatastoreFiles, DatastorePath, flat_extent
from tapir.plugins.vmware.role import VmwarePlugin

from .appliances import vcsim_appliance
from .cbt_helpers import allocated_bytes
from .vm_disks import (
    MiB,
    descriptor_text,
    disk_bytes,
    find_vm,
    prepare_disk,
    snapshot_names,
    take_snapshot,
)

VM = "DC0_H0_VM0"
SIZE = 14 * MiB + 512 * 1024  # not a multiple of the engine's 4 MiB disk chunks


@pytest.fixture
def app(tmp_path: Path, vcsim: Vcsim) -> Iterator[Appliance]:
    """An appliance with the vmware and disk plugins, a disk pool and vcsim registered."""
    appliance = vcsim_appliance(tmp_path, vcsim)
    yield appliance
    appliance.close()


def make_job(app: Appliance, name: str = "vms", **options: Any) -> None:
    app.create_job(
        name, "vmware", "default", options=options, selection={"assets": [VM]}, endpoint="vc"
    )


def read_back(app: Appliance, rp_id: str) -> tuple[Any, bytes]:
    reader = RecoveryPointReader(app.repository("default"), rp_id)
    (item,) = [i for i in reader.items() if i.kind == ItemKind.DISK]
    image = reader.open_disk(item)
    return item, image.pread(0, image.size)


@pytest.fixture
def fail_after_first_read(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[], None]], None]:
    """Run an action right after the first successful Range read of a disk extent."""

    def install(action: Callable[[], None]) -> None:
        original = DatastoreFiles.read_range
        calls = {"n": 0}

        def read_range(self: DatastoreFiles, file: DatastorePath, offset: int, length: int):
            data = original(self, file, offset, length)
            calls["n"] += 1
            if calls["n"] == 1:
                action()
            return data

        monkeypatch.setattr(DatastoreFiles, "read_range", read_range)

    return install


def test_full_backup_reads_back_byte_for_byte_and_removes_the_snapshot(
    app: Appliance, vsphere: Any
) -> None:
    data = disk_bytes(SIZE)
    disk = prepare_disk(vsphere, VM, data)
    make_job(app)
    run = app.run_job("vms")
    assert run.state == "succeeded", run.error
    # Only the allocated areas went over HTTPS (CBT's "*" query; see test_incremental.py).
    assert run.bytes_read == allocated_bytes(data) < SIZE
    (rp,) = app.recovery_points(job="vms")
    assert rp.kind == "image" and rp.level == "full" and rp.plugin == "vmware"
    item, restored = read_back(app, rp.id)
    assert item.path == f"disks/{disk.key}-{disk.label}".encode()
    assert item.size == SIZE and restored == data
    # The aligned 4 MiB run of zeros is stored as a hole.
    assert any(c.id is None for c in item.chunks)
    assert item.extra["file_name"] == f"[LocalDS_0] {VM}/disk1.vmdk"
    assert item.extra["extent"] == f"[LocalDS_0] {VM}/disk1-flat.vmdk"
    config = rp.meta["config"]
    assert config["instanceUuid"] == rp.asset.external_id and config["name"] == VM
    assert rp.meta["snapshot"] == {"quiesced": False, "memory": False}
    assert snapshot_names(vsphere, disk.vm) == []


def test_quiesce_without_vmware_tools_is_a_warning_not_a_failure(
    app: Appliance, vsphere: Any
) -> None:
    data = disk_bytes(4 * MiB, seed=2)
    disk = prepare_disk(vsphere, VM, data)
    make_job(app, quiesce=True)
    run = app.run_job("vms")
    assert run.state == "warning", run.error
    (rp,) = app.recovery_points(job="vms")
    assert rp.warnings == 1
    log = " ".join(line for _, _, line in app.run_log(run.id))
    assert "quiesce asked" in log and "VMware Tools are not running" in log
    assert read_back(app, rp.id)[1] == data
    assert snapshot_names(vsphere, disk.vm) == []


def test_extent_cut_short_mid_transfer_leaves_no_point_and_no_snapshot(
    app: Appliance, vsphere: Any, fail_after_first_read: Any
) -> None:
    disk = prepare_disk(vsphere, VM, disk_bytes(SIZE, seed=3))
    fail_after_first_read(lambda: disk.flat.write_bytes(b"\x01" * MiB))
    make_job(app)
    run = app.run_job("vms")
    assert run.state == "failed"
    assert "disk1-flat.vmdk" in (run.error or "") and "truncated" in (run.error or "")
    assert app.recovery_points(job="vms") == []
    assert snapshot_names(vsphere, disk.vm) == []


def test_vcenter_gone_mid_transfer_fails_clearly_and_keeps_no_half_backup(
    app: Appliance, vcsim: Vcsim, vsphere: Any, fail_after_first_read: Any
) -> None:
    prepare_disk(vsphere, VM, disk_bytes(SIZE, seed=4))
    fail_after_first_read(vcsim.stop)
    make_job(app)
    run = app.run_job("vms")
    assert run.state == "failed"
    assert f"lost the connection to {vcsim.address}" in (run.error or "")
    assert app.recovery_points(job="vms") == []


def test_snapshot_left_by_a_killed_run_is_removed_at_the_next_run(
    app: Appliance, vsphere: Any
) -> None:
    data = disk_bytes(4 * MiB, seed=5)
    disk = prepare_disk(vsphere, VM, data)
    # What a run killed between CreateSnapshot and RemoveSnapshot leaves behind.
    take_snapshot(disk.vm, "tapir-20260101T000000Z", snapshots.DESCRIPTION)
    assert snapshot_names(vsphere, disk.vm) == ["tapir-20260101T000000Z"]
    make_job(app)
    run = app.run_job("vms")
    assert run.state == "warning", run.error
    log = " ".join(line for _, _, line in app.run_log(run.id))
    assert "removed snapshot tapir-20260101T000000Z" in log
    (rp,) = app.recovery_points(job="vms")
    assert read_back(app, rp.id)[1] == data
    assert snapshot_names(vsphere, disk.vm) == []


def test_an_administrators_snapshot_is_kept_and_refused_clearly(
    app: Appliance, vsphere: Any
) -> None:
    disk = prepare_disk(vsphere, VM, disk_bytes(4 * MiB, seed=6))
    # Tapir's name prefix but not its description: not Tapir's to remove.
    take_snapshot(disk.vm, "tapir-before-upgrade", "taken by the admin")
    make_job(app)
    run = app.run_job("vms")
    assert run.state == "failed"
    assert "has snapshots (tapir-before-upgrade)" in (run.error or "")
    assert app.recovery_points(job="vms") == []
    assert snapshot_names(vsphere, disk.vm) == ["tapir-before-upgrade"]


@pytest.mark.parametrize(
    ("descriptor", "message"),
    [
        ("", "no extent found"),
        (descriptor_text(4 * MiB, kind="SPARSE"), "of type SPARSE"),
        (descriptor_text(2 * MiB), "declares 2097152 bytes, the disk has 4194304"),
        (descriptor_text(4 * MiB, extent="missing-flat.vmdk"), "missing-flat.vmdk does not exist"),
    ],
)
def test_a_disk_the_transport_cannot_read_fails_clearly_without_a_snapshot_left(
    app: Appliance, vsphere: Any, descriptor: str, message: str
) -> None:
    disk = prepare_disk(vsphere, VM, disk_bytes(4 * MiB, seed=7), descriptor=descriptor)
    make_job(app)
    run = app.run_job("vms")
    assert run.state == "failed"
    assert message in (run.error or "")
    assert app.recovery_points(job="vms") == []
    assert snapshot_names(vsphere, disk.vm) == []


def test_a_bad_quiesce_option_fails_before_any_snapshot(app: Appliance, vsphere: Any) -> None:
    vm = find_vm(vsphere, VM)
    make_job(app, quiesce="sometimes")
    run = app.run_job("vms")
    assert run.state == "failed"
    assert "'quiesce' must be true or false" in (run.error or "")
    assert snapshot_names(vsphere, vm) == []


def test_capabilities_claim_only_what_works() -> None:
    plugin = VmwarePlugin()
    assert plugin.capabilities() == {"quiesce", "incremental"}
    assert [o.name for o in plugin.job_options()] == ["quiesce"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('RW 8 VMFS "a-flat.vmdk"\nRW 8 VMFS "b-flat.vmdk"', "2 extents"),
        ('RW 8 VMFS "../etc/passwd"', "refusing the extent file name"),
        ('RW 8 FLAT "a-flat.vmdk" 16', "starts at sector 16"),
        ('createType="monolithicSparse"', "no extent found"),
    ],
)
def test_descriptors_other_than_one_flat_extent_are_refused(text: str, message: str) -> None:
    with pytest.raises(PluginError, match=message):
        flat_extent(DatastorePath.parse("[ds] vm/a.vmdk"), text)


def test_flat_descriptor_and_datastore_paths_parse() -> None:
    desc = DatastorePath.parse("[LocalDS_0] my vm/disk1.vmdk")
    assert (desc.datastore, desc.path) == ("LocalDS_0", "my vm/disk1.vmdk")
    ext = flat_extent(desc, descriptor_text(3 * MiB))
    assert str(ext.file) == "[LocalDS_0] my vm/disk1-flat.vmdk" and ext.size == 3 * MiB
    with pytest.raises(PluginError, match="not a datastore path"):
        DatastorePath.parse("disk1.vmdk")
