"""Test helpers: real disk bytes in a vcsim VM's datastore files, and its snapshot tree.

vcsim creates each VM's ``disk1.vmdk`` and ``disk1-flat.vmdk`` empty in a local
folder (the datastore's ``info.url``) and serves them over ``/folder/...``; these
helpers resize the disk, write a flat descriptor and the extent's bytes there.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyVim.task import WaitForTask
from pyVmomi import vim, vmodl

KiB = 1024
MiB = 1024 * KiB


@dataclass
class VmDisk:
    """Where one VM disk's files are on the local disk behind vcsim's datastore."""

    vm: Any
    key: int
    label: str
    descriptor: Path
    flat: Path


def find_vm(si: Any, name: str) -> Any:
    content = si.content
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
    try:
        return next(vm for vm in view.view if vm.name == name)
    finally:
        view.DestroyView()


def descriptor_text(size: int, extent: str = "disk1-flat.vmdk", kind: str = "VMFS") -> str:
    return (
        "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n"
        'createType="vmfs"\n\n# Extent description\n'
        f'RW {size // 512} {kind} "{extent}"\n\n# The Disk Data Base\n'
        'ddb.adapterType = "lsilogic"\n'
    )


def disk_bytes(size: int, seed: int = 1) -> bytes:
    """Random data with runs of zeros: one chunk-aligned 4 MiB run and an unaligned one."""
    rng = random.Random(seed)
    data = bytearray(rng.randbytes(size))
    for start, end in ((4 * MiB, 8 * MiB), (10 * MiB + 777, 11 * MiB + 5)):
        if end <= size:
            data[start:end] = bytes(end - start)
    data[size // 3 : size // 3 + 4099] = bytes(4099)
    return bytes(data)


def prepare_disk(si: Any, vm_name: str, data: bytes, descriptor: str | None = None) -> VmDisk:
    """Resize the VM's first disk to ``len(data)`` and write its descriptor and flat extent."""
    assert len(data) % KiB == 0
    vm = find_vm(si, vm_name)
    disk = next(d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk))
    disk.capacityInKB = len(data) // KiB
    change = vim.vm.device.VirtualDeviceSpec(operation="edit", device=disk)
    WaitForTask(vm.ReconfigVM_Task(vim.vm.ConfigSpec(deviceChange=[change])))
    folder = Path(disk.backing.datastore.info.url)
    relative = disk.backing.fileName.split("] ", 1)[1]
    desc_path = folder / relative
    flat_path = desc_path.with_name(desc_path.stem + "-flat.vmdk")
    assert desc_path.is_file() and flat_path.is_file(), "vcsim did not create the disk files"
    desc_path.write_text(descriptor if descriptor is not None else descriptor_text(len(data)))
    flat_path.write_bytes(data)
    return VmDisk(vm, int(disk.key), str(disk.deviceInfo.label), desc_path, flat_path)


def snapshot_names(si: Any, vm: Any) -> list[str]:
    """Names in the VM's snapshot tree, read with the property collector."""
    query = vmodl.query.PropertyCollector
    spec = query.FilterSpec(
        objectSet=[query.ObjectSpec(obj=vm, skip=False)],
        propSet=[query.PropertySpec(type=vim.VirtualMachine, pathSet=["snapshot"])],
    )
    result = si.content.propertyCollector.RetrievePropertiesEx([spec], query.RetrieveOptions())
    names: list[str] = []

    def walk(nodes: Any) -> None:
        for node in nodes or ():
            names.append(str(node.name))
            walk(node.childSnapshotList)

    for oc in result.objects if result else ():
        for prop in oc.propSet or ():
            walk(prop.val.rootSnapshotList)
    return names


def take_snapshot(vm: Any, name: str, description: str) -> None:
    WaitForTask(vm.CreateSnapshot_Task(name, description, False, False))
