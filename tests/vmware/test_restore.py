"""VMware restores against vcsim: a whole VM under a new name, a disk attached to an existing
VM, disk images downloaded, each compared byte for byte with the backed-up disk; and the
refusals that must come before anything is uploaded.

Most tests call the plugin with the engine's own reader over the real pool (which hands
the restore the point's stored metadata, the VM configuration), to watch its progress
and inject faults; `test_cli_restores_a_vm_with_restore_options` and the download test
go through the real `tapir restore` / ``Appliance.restore`` path.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pyVmomi import vim
from vcsim_server import Vcsim

from tapir.appliance.cli.main import build_cli
from tapir.appliance.datapath.reader import RecoveryPointReader
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_api import (
    AssetInfo,
    BackupLevel,
    BackupRequest,
    ConnectionFailed,
    EndpointInfo,
    Item,
    ItemKind,
    PluginError,
    RestoreRequest,
    RestoreResult,
)
from tapir.appliance.plugin_api.errors import ChunkCorrupt
from tapir.appliance.plugin_api.testing.memory_sink import MemoryRestoreSource, MemorySink
from tapir.appliance.plugin_manager import load_plugins
from tapir.plugins.disk import plugin as disk_plugin
from tapir.plugins.vmware import plugin as vmware_plugin
from tapir.plugins.vmware.datastore import DatastorePath, flat_extent
from tapir.plugins.vmware.role import VmwarePlugin

from .appliances import vcsim_appliance
from .vm_disks import MiB, disk_bytes, find_vm, prepare_disk

VM = "DC0_H0_VM0"
OTHER_VM = "DC0_H0_VM1"
SIZE = 9 * MiB + 512 * 1024  # not a multiple of the engine's 4 MiB disk chunks


@dataclass
class Progress:
    """Records what a restore reports."""

    bytes_total: int | None = None
    bytes_done: int = 0
    items_done: int = 0
    current: list[str] = field(default_factory=list)

    def set_total(self, bytes_total: int | None = None, items_total: int | None = None) -> None:
        self.bytes_total = bytes_total

    def advance(self, bytes_done: int = 0, items_done: int = 0, current: str | None = None) -> None:
        self.bytes_done += bytes_done
        self.items_done += items_done
        if current:
            self.current.append(current)


@pytest.fixture
def app(tmp_path: Path, vcsim: Vcsim) -> Iterator[Appliance]:
    """An appliance with the vmware and disk plugins, a disk pool and vcsim registered."""
    appliance = vcsim_appliance(tmp_path, vcsim)
    yield appliance
    appliance.close()


@pytest.fixture
def backed_up(app: Appliance, vsphere: Any) -> tuple[Any, bytes]:
    """A full backup of VM's disk (random data with holes); the point and the data."""
    data = disk_bytes(SIZE, seed=11)
    prepare_disk(vsphere, VM, data)
    app.create_job("vms", "vmware", "default", selection={"assets": [VM]}, endpoint="vc")
    run = app.run_job("vms")
    # "warning" while vSphere lists no allocated areas (CBT): every byte read then.
    assert run.state in ("succeeded", "warning"), run.error
    (rp,) = app.recovery_points(job="vms")
    return rp, data


def restore(
    app: Appliance,
    rp: Any,
    source: Any = None,
    overwrite: str = "never",
    target: Path | None = None,
    **options: object,
) -> tuple[RestoreResult, Progress]:
    """Call the plugin's restore as the engine does, with restore options."""
    endpoint = app.endpoint("vc")
    asset = rp.asset
    request = RestoreRequest(
        asset=AssetInfo(asset.kind, asset.name, asset.external_id, dict(asset.meta)),
        target=target,
        overwrite=overwrite,
        options=dict(options),
        endpoint=EndpointInfo(
            endpoint.name, endpoint.plugin, endpoint.address, dict(endpoint.options)
        ),
    )
    if source is None:
        source = RecoveryPointReader(app.repository("default"), rp.id)
    progress = Progress()
    ctx = app.env.plugin_context("vmware", progress=progress)
    return VmwarePlugin().restore(request, source, ctx), progress


def vm_names(vsphere: Any) -> list[str]:
    content = vsphere.content
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
    try:
        return [v.name for v in view.view]
    finally:
        view.DestroyView()


def vm_disks(vm: Any) -> list[Any]:
    return [d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk)]


def local_file(disk: Any, path: str) -> Path:
    """The file behind a datastore path on vcsim's local folder for the disk's datastore."""
    return Path(disk.backing.datastore.info.url) / DatastorePath.parse(path).path


def flat_bytes(disk: Any) -> bytes:
    """The bytes of the flat extent the disk's descriptor names."""
    desc = local_file(disk, disk.backing.fileName)
    extent = flat_extent(DatastorePath.parse(disk.backing.fileName), desc.read_text())
    return local_file(disk, str(extent.file)).read_bytes()[: extent.size]


def datastore_folders(vsphere: Any) -> set[str]:
    disk = vm_disks(find_vm(vsphere, VM))[0]
    return {p.name for p in Path(disk.backing.datastore.info.url).iterdir()}


def test_whole_vm_under_a_new_name_is_powered_off_and_its_disk_equal_byte_for_byte(
    app: Appliance, vsphere: Any, backed_up: tuple[Any, bytes]
) -> None:
    rp, data = backed_up
    original = find_vm(vsphere, VM)
    result, progress = restore(app, rp, mode="vm", vm_name="restored-vm")
    assert (result.items_restored, result.bytes_restored) == (1, SIZE)
    assert progress.bytes_total == SIZE and progress.bytes_done == SIZE
    vm = find_vm(vsphere, "restored-vm")
    assert vm.runtime.powerState == "poweredOff"
    assert vm.config.instanceUuid != original.config.instanceUuid
    assert vm.config.hardware.memoryMB == original.config.hardware.memoryMB
    assert vm.config.hardware.numCPU == original.config.hardware.numCPU
    assert vm.config.guestId == original.config.guestId
    (disk,) = vm_disks(vm)
    assert disk.backing.fileName == "[LocalDS_0] restored-vm/disk1.vmdk"
    assert disk.capacityInBytes == SIZE
    assert flat_bytes(disk) == data
    # The adapter is on the original's network, with a MAC address of its own.
    (nic,) = [d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualE1000)]
    (old_nic,) = [
        d for d in original.config.hardware.device if isinstance(d, vim.vm.device.VirtualE1000)
    ]
    assert nic.backing.port.portgroupKey == old_nic.backing.port.portgroupKey
    # The original VM and its disk are untouched.
    assert flat_bytes(vm_disks(find_vm(vsphere, VM))[0]) == data


def test_cli_restores_a_vm_with_restore_options(
    app: Appliance, vsphere: Any, backed_up: tuple[Any, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    rp, data = backed_up
    monkeypatch.setenv("TAPIR_HOME", str(app.settings.home))
    monkeypatch.setenv("TAPIR_DATABASE_URL", app.catalog.url)

    def tapir(*args: str) -> Any:
        registry = load_plugins(extra=[vmware_plugin, disk_plugin], entry_points=False)
        return CliRunner().invoke(build_cli(registry), list(args))

    # A name the plugin does not declare is refused before anything happens.
    res = tapir("restore", rp.id, "--in-place", "--option", "colour=blue")
    assert res.exit_code == 2
    assert "no restore option 'colour'" in res.output and "vm_name" in res.output
    res = tapir("restore", rp.id, "--in-place", "--option", "power_on=maybe")
    assert res.exit_code == 2 and "power_on" in res.output
    assert "from-cli" not in vm_names(vsphere)

    res = tapir(
        "restore", rp.id, "--in-place", "--option", "mode=vm", "--option", "vm_name=from-cli"
    )
    assert res.exit_code == 0, res.output
    vm = find_vm(vsphere, "from-cli")
    assert vm.runtime.powerState == "poweredOff"
    (disk,) = vm_disks(vm)
    assert flat_bytes(disk) == data
    # The options are in the audit log and in the restore run's parameters.
    [event] = [e for e in app.audit_events() if e.action == "restore"]
    assert event.details["options"] == {"mode": "vm", "vm_name": "from-cli"}
    [run] = [r for r in app.runs() if r.kind == "restore"]
    assert run.params["options"] == {"mode": "vm", "vm_name": "from-cli"}


def test_whole_vm_on_another_network_powered_on_when_asked(
    app: Appliance, vsphere: Any, backed_up: tuple[Any, bytes]
) -> None:
    rp, data = backed_up
    restore(app, rp, mode="vm", vm_name="copy", network="VM Network", power_on="true")
    vm = find_vm(vsphere, "copy")
    assert vm.runtime.powerState == "poweredOn"
    (nic,) = [d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualE1000)]
    assert nic.backing.deviceName == "VM Network"
    assert flat_bytes(vm_disks(vm)[0]) == data


def test_an_existing_vm_name_is_refused_unless_overwrite_always(
    app: Appliance, vsphere: Any, backed_up: tuple[Any, bytes]
) -> None:
    rp, data = backed_up
    before = datastore_folders(vsphere)
    with pytest.raises(PluginError, match=f"a VM named '{VM}' exists already"):
        restore(app, rp, mode="vm")
    assert datastore_folders(vsphere) == before
    old_uuid = find_vm(vsphere, VM).config.instanceUuid
    # Replacing: the data changed since the backup, the restore brings the backup back.
    prepare_disk(vsphere, VM, disk_bytes(SIZE, seed=12))
    restore(app, rp, overwrite="always", mode="vm")
    vm = find_vm(vsphere, VM)
    assert vm.config.instanceUuid != old_uuid
    assert vm.runtime.powerState == "poweredOff"
    assert flat_bytes(vm_disks(vm)[0]) == data
    names = vm_names(vsphere)
    assert names.count(VM) == 1 and not any("tapir-restore" in n for n in names)


def test_single_disk_is_attached_to_an_existing_vm(
    app: Appliance, vsphere: Any, backed_up: tuple[Any, bytes]
) -> None:
    rp, data = backed_up
    target = find_vm(vsphere, OTHER_VM)
    before = {d.key for d in vm_disks(target)}
    result, progress = restore(app, rp, mode="disk", vm_name=OTHER_VM)
    assert result.items_restored == 1 and progress.bytes_done == SIZE
    (new,) = [d for d in vm_disks(find_vm(vsphere, OTHER_VM)) if d.key not in before]
    assert new.backing.fileName == f"[LocalDS_0] {OTHER_VM}/disk1_restored.vmdk"
    assert new.unitNumber != 7 and flat_bytes(new) == data
    # A second restore of the same disk gets a file of its own.
    restore(app, rp, mode="disk", vm_name=OTHER_VM)
    names = sorted(d.backing.fileName for d in vm_disks(find_vm(vsphere, OTHER_VM)))
    assert f"[LocalDS_0] {OTHER_VM}/disk1_restored_1.vmdk" in names


def test_download_through_the_engine_is_the_disk_sparse_and_byte_for_byte(
    app: Appliance, backed_up: tuple[Any, bytes], tmp_path: Path
) -> None:
    rp, data = backed_up
    target = tmp_path / "out"
    result = app.restore(rp.id, target=target)
    assert (result.items_restored, result.bytes_restored) == (1, SIZE)
    flat = target / "disk1-flat.vmdk"
    assert flat.read_bytes() == data
    # The 4 MiB run of zeros stayed a hole.
    assert flat.stat().st_blocks * 512 <= SIZE - 4 * MiB
    extent = flat_extent(DatastorePath("local", "disk1.vmdk"), (target / "disk1.vmdk").read_text())
    assert extent.file.path == "disk1-flat.vmdk" and extent.size == SIZE
    with pytest.raises(PluginError, match="refusing to overwrite"):
        app.restore(rp.id, target=target)
    assert flat.read_bytes() == data


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"network": "no-such-net"}, "network 'no-such-net' is not available on host DC0_H0"),
        ({"network": "nic 9=VM Network"}, "names adapters the VM does not have"),
        ({"datastore": "NoSuchDS"}, "datastore 'NoSuchDS' is not available on host"),
        ({"host": "no-host"}, "host 'no-host' not found in datacenter DC0"),
        ({"mode": "sideways"}, "'mode' must be one of vm, disk, download"),
        ({"power_on": "maybe"}, "'power_on' must be true or false"),
    ],
)
def test_a_bad_placement_is_refused_before_anything_is_uploaded(
    app: Appliance,
    vsphere: Any,
    backed_up: tuple[Any, bytes],
    options: dict[str, object],
    message: str,
) -> None:
    rp, _ = backed_up
    before = datastore_folders(vsphere)
    with pytest.raises(PluginError, match=message):
        restore(app, rp, **{"mode": "vm", "vm_name": "refused", **options})
    assert datastore_folders(vsphere) == before
    assert "refused" not in vm_names(vsphere)


def test_a_datastore_without_the_space_is_refused_before_any_upload(
    app: Appliance, vsphere: Any, backed_up: tuple[Any, bytes]
) -> None:
    rp, _ = backed_up
    (stored,) = RecoveryPointReader(app.repository("default"), rp.id).items()
    free = vm_disks(find_vm(vsphere, VM))[0].backing.datastore.summary.freeSpace
    # The same disk as the point holds, claimed larger than the datastore's free space.
    huge = Item(path=stored.path, kind=ItemKind.DISK, size=free + MiB, extra=dict(stored.extra))
    source = MemoryRestoreSource.from_items([huge])
    source.metadata = rp.meta
    before = datastore_folders(vsphere)
    with pytest.raises(PluginError, match=r"datastore LocalDS_0 has \d+ bytes free"):
        restore(app, rp, source, mode="vm", vm_name="too-big")
    with pytest.raises(PluginError, match=r"datastore LocalDS_0 has \d+ bytes free"):
        restore(app, rp, source, mode="disk", vm_name=OTHER_VM)
    assert datastore_folders(vsphere) == before


def test_a_disk_restore_to_a_missing_vm_is_refused(
    app: Appliance, backed_up: tuple[Any, bytes]
) -> None:
    rp, _ = backed_up
    with pytest.raises(PluginError, match="no VM named 'ghost'"):
        restore(app, rp, mode="disk", vm_name="ghost")
    with pytest.raises(PluginError, match="needs the restore option vm_name"):
        restore(app, rp, mode="disk")


def test_without_the_stored_configuration_a_vm_restore_is_refused_clearly(
    app: Appliance, backed_up: tuple[Any, bytes]
) -> None:
    rp, _ = backed_up
    reader = RecoveryPointReader(app.repository("default"), rp.id)
    reader.metadata = {}  # as a point made by an older plugin release, without it
    with pytest.raises(PluginError, match="configuration is not available"):
        restore(app, rp, reader, mode="vm", vm_name="x")


def memory_point(app: Appliance, rp: Any) -> MemoryRestoreSource:
    """The VM backed up again into the conformance kit's memory sink (for fault injection)."""
    endpoint = app.endpoint("vc")
    asset = rp.asset
    request = BackupRequest(
        asset=AssetInfo(asset.kind, asset.name, asset.external_id, dict(asset.meta)),
        level=BackupLevel.FULL,
        endpoint=EndpointInfo(
            endpoint.name, endpoint.plugin, endpoint.address, dict(endpoint.options)
        ),
    )
    sink = MemorySink()
    result = VmwarePlugin().backup(request, sink, app.env.plugin_context("vmware"))
    return MemoryRestoreSource(sink, metadata=result.metadata)


def leftover_files(vsphere: Any, folder: str) -> list[str]:
    disk = vm_disks(find_vm(vsphere, VM))[0]
    path = Path(disk.backing.datastore.info.url) / folder
    return sorted(p.name for p in path.iterdir()) if path.exists() else []


def test_a_damaged_chunk_fails_the_restore_and_leaves_no_vm_and_no_disk_file(
    app: Appliance, vsphere: Any, backed_up: tuple[Any, bytes]
) -> None:
    rp, _ = backed_up
    source = memory_point(app, rp)
    (disk,) = source.items()
    last = [ref.id for ref in disk.chunks if ref.id is not None][-1]
    source.corrupt_chunk(last)
    with pytest.raises(ChunkCorrupt):
        restore(app, rp, source, mode="vm", vm_name="damaged")
    assert "damaged" not in vm_names(vsphere)
    assert leftover_files(vsphere, "damaged") == []
    before = {d.key for d in vm_disks(find_vm(vsphere, OTHER_VM))}
    with pytest.raises(ChunkCorrupt):
        restore(app, rp, source, mode="disk", vm_name=OTHER_VM)
    assert {d.key for d in vm_disks(find_vm(vsphere, OTHER_VM))} == before
    assert not [n for n in leftover_files(vsphere, OTHER_VM) if "restored" in n]


def test_vcenter_gone_mid_upload_fails_clearly(
    app: Appliance, vcsim: Vcsim, backed_up: tuple[Any, bytes]
) -> None:
    rp, _ = backed_up
    reader = RecoveryPointReader(app.repository("default"), rp.id)

    class StopsVcenter(RecoveryPointReader):
        """Stops the simulator as soon as the upload has read its first bytes."""

        def open_disk(self, item: Item) -> Any:
            disk = super().open_disk(item)

            class Image:
                size = disk.size

                def pread(self, offset: int, length: int) -> bytes:
                    vcsim.stop()
                    return disk.pread(offset, length)

            return Image()

    with pytest.raises(ConnectionFailed, match=f"lost the connection to {vcsim.address}"):
        restore(app, rp, StopsVcenter(reader.repo, rp.id), mode="vm", vm_name="cut")
