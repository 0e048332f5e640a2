"""The ``vim.vm.ConfigSpec`` of a restored VM, made from the configuration stored with the
recovery point (``config_document`` of :mod:`.backup`).

What is restored: CPUs, memory, guest type, firmware, hardware version, annotation,
the disk controllers, the network adapters (new MAC addresses, so the restored VM
can run beside the original) and the disks. Everything else that is tied to the
original host (CD-ROM and floppy media, serial ports, USB and PCI pass-through) is
left out and named in the run log.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyVmomi import VmomiSupport, vim

from tapir.appliance.plugin_api import PluginError

_CONTROLLERS = (
    vim.vm.device.VirtualSCSIController,
    vim.vm.device.VirtualSATAController,
    vim.vm.device.VirtualNVMEController,
)
_DISK_MODES = ("persistent", "independent_persistent", "independent_nonpersistent")
#: The IDE controllers every new VM has, by bus number.
_IDE_KEYS = {0: 200, 1: 201}


def _type(doc: dict[str, Any]) -> type | None:
    try:
        return VmomiSupport.GetVmodlType(str(doc.get("_vimtype", "")))  # type: ignore[no-any-return]
    except KeyError:
        return None


def devices(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The stored devices (each a plain dict with ``_vimtype``)."""
    hardware = config.get("hardware") or {}
    return [d for d in hardware.get("device") or [] if isinstance(d, dict)]


def _label(doc: dict[str, Any]) -> str:
    info = doc.get("deviceInfo") or {}
    return str(info.get("label") or f"device {doc.get('key')}")


@dataclass
class SpecParts:
    """The device changes of a new VM, and what was left out."""

    changes: list[Any] = field(default_factory=list)
    #: Stored controller key -> key of the controller in the new VM.
    controller_keys: dict[int, int] = field(default_factory=dict)
    left_out: list[str] = field(default_factory=list)
    next_key: int = -100

    def key(self) -> int:
        self.next_key -= 1
        return self.next_key


def add_controllers(parts: SpecParts, config: dict[str, Any]) -> None:
    """New controllers of the stored types and bus numbers (IDE ones exist already)."""
    for doc in devices(config):
        kind = _type(doc)
        if kind is vim.vm.device.VirtualIDEController:
            parts.controller_keys[int(doc["key"])] = _IDE_KEYS.get(
                int(doc.get("busNumber", 0)), 200
            )
            continue
        if kind is None or not issubclass(kind, _CONTROLLERS):
            continue
        device = kind(key=parts.key(), busNumber=int(doc.get("busNumber") or 0))
        if issubclass(kind, vim.vm.device.VirtualSCSIController):
            device.sharedBus = str(doc.get("sharedBus") or "noSharing")
        parts.controller_keys[int(doc["key"])] = device.key
        parts.changes.append(vim.vm.device.VirtualDeviceSpec(operation="add", device=device))


def nic_labels(config: dict[str, Any]) -> set[str]:
    """The labels of the stored network adapters (what the ``network`` option maps)."""
    return {
        _label(doc)
        for doc in devices(config)
        if (kind := _type(doc)) is not None and issubclass(kind, vim.vm.device.VirtualEthernetCard)
    }


def add_nics(
    parts: SpecParts,
    config: dict[str, Any],
    network_for: Callable[[str, dict[str, Any]], Any],
) -> None:
    """New adapters of the stored types; ``network_for(label, backing)`` gives each one's
    network (a ``vim.Network``) and raises PluginError when it is missing."""
    for doc in devices(config):
        kind = _type(doc)
        if kind is None or not issubclass(kind, vim.vm.device.VirtualEthernetCard):
            continue
        label = _label(doc)
        net = network_for(label, doc.get("backing") or {})
        nic = kind(key=parts.key(), addressType="generated")
        nic.backing = nic_backing(net)
        nic.connectable = vim.vm.device.VirtualDevice.ConnectInfo(
            startConnected=True, allowGuestControl=True, connected=False
        )
        nic.deviceInfo = vim.Description(label=label, summary=net.name)
        parts.changes.append(vim.vm.device.VirtualDeviceSpec(operation="add", device=nic))


def nic_backing(net: Any) -> Any:
    """The backing that connects an adapter to a standard or distributed network."""
    if isinstance(net, vim.dvs.DistributedVirtualPortgroup):
        port = vim.dvs.PortConnection(
            switchUuid=net.config.distributedVirtualSwitch.uuid, portgroupKey=net.key
        )
        return vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo(port=port)
    return vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(deviceName=net.name, network=net)


def disk_device(
    key: int, controller_key: int, unit: int, file_name: str, size: int, extra: dict[str, Any]
) -> Any:
    """A disk backed by an existing flat VMDK (uploaded before: no file operation)."""
    mode = extra.get("disk_mode")
    backing = vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
        fileName=file_name,
        diskMode=mode if mode in _DISK_MODES else "persistent",
        thinProvisioned=bool(extra.get("thin")),
    )
    return vim.vm.device.VirtualDisk(
        key=key,
        controllerKey=controller_key,
        unitNumber=unit,
        capacityInKB=-(-size // 1024),
        capacityInBytes=size,
        backing=backing,
    )


def left_out(parts: SpecParts, config: dict[str, Any]) -> None:
    """Name the stored devices a restore does not recreate (tied to the original host)."""
    skipped_kinds = (
        vim.vm.device.VirtualCdrom,
        vim.vm.device.VirtualFloppy,
        vim.vm.device.VirtualSerialPort,
        vim.vm.device.VirtualParallelPort,
        vim.vm.device.VirtualUSB,
        vim.vm.device.VirtualUSBController,
        vim.vm.device.VirtualPCIPassthrough,
        vim.vm.device.VirtualSoundCard,
    )
    for doc in devices(config):
        kind = _type(doc)
        if kind is not None and issubclass(kind, skipped_kinds):
            parts.left_out.append(_label(doc))


def config_spec(config: dict[str, Any], name: str, vmx_path: str, parts: SpecParts) -> Any:
    """The VM's own settings from the stored configuration, with ``parts`` as devices."""
    hardware = config.get("hardware") or {}
    cpus = int(hardware.get("numCPU") or 1)
    memory = int(hardware.get("memoryMB") or 0)
    if memory <= 0:
        raise PluginError("the stored VM configuration has no memory size")
    spec = vim.vm.ConfigSpec(
        name=name,
        guestId=str(config.get("guestId") or "otherGuest"),
        numCPUs=cpus,
        numCoresPerSocket=int(hardware.get("numCoresPerSocket") or 1),
        memoryMB=memory,
        files=vim.vm.FileInfo(vmPathName=vmx_path),
        deviceChange=parts.changes,
    )
    for attr in ("firmware", "version", "annotation"):
        if config.get(attr):
            setattr(spec, attr, str(config[attr]))
    return spec
