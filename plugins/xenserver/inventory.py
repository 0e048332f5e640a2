"""The pool's inventory in six calls: pool, hosts, SRs, VMs, VBDs and VDIs, each all records.

Templates, control domains (dom0) and snapshots are not VMs to protect and are
left out. Folders and custom fields are XenCenter conventions stored in a VM's
``other_config``: ``folder`` holds the folder path and every
``XenCenter.CustomFields.<name>`` key one custom field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NULL_REF = "OpaqueRef:NULL"
CUSTOM_FIELD_PREFIX = "XenCenter.CustomFields."


@dataclass(frozen=True)
class Disk:
    """One virtual disk (a VBD of type Disk with its VDI) of a VM."""

    userdevice: str
    vdi_uuid: str
    name: str
    virtual_size: int
    sr_uuid: str
    sr_name: str
    bootable: bool
    mode: str

    def as_dict(self) -> dict[str, object]:
        return {
            "userdevice": self.userdevice,
            "vdi_uuid": self.vdi_uuid,
            "name": self.name,
            "virtual_size": self.virtual_size,
            "sr_uuid": self.sr_uuid,
            "sr": self.sr_name,
            "bootable": self.bootable,
            "mode": self.mode,
        }


@dataclass(frozen=True)
class VirtualMachine:
    """What discovery tells of one VM."""

    uuid: str
    name: str
    power_state: str
    host: str
    pool: str
    folder: str
    tags: tuple[str, ...]
    custom_attributes: dict[str, str]
    disks: tuple[Disk, ...]
    quiesce_possible: bool


@dataclass
class Inventory:
    """Hosts, SRs and the VMs worth protecting."""

    pool: str
    hosts: list[dict[str, Any]] = field(default_factory=list)
    srs: list[dict[str, Any]] = field(default_factory=list)
    vms: list[VirtualMachine] = field(default_factory=list)


def is_protectable(vm: dict[str, Any]) -> bool:
    """A real VM: not a template, not a control domain, not a snapshot."""
    return not (vm.get("is_a_template") or vm.get("is_control_domain") or vm.get("is_a_snapshot"))


def disks_of(
    vm: dict[str, Any],
    vbds: dict[str, dict[str, Any]],
    vdis: dict[str, dict[str, Any]],
    srs: dict[str, dict[str, Any]],
) -> list[Disk]:
    """The VM's disks by user device number (CD drives and empty drives left out)."""
    out = []
    for vbd_ref in vm.get("VBDs", []):
        vbd = vbds.get(vbd_ref)
        if vbd is None or vbd.get("type") != "Disk" or vbd.get("empty"):
            continue
        vdi = vdis.get(vbd.get("VDI", NULL_REF))
        if vdi is None:
            continue
        sr = srs.get(vdi.get("SR", NULL_REF), {})
        out.append(
            Disk(
                userdevice=str(vbd.get("userdevice", "")),
                vdi_uuid=str(vdi["uuid"]),
                name=str(vdi.get("name_label", "")),
                virtual_size=int(vdi.get("virtual_size", 0)),
                sr_uuid=str(sr.get("uuid", "")),
                sr_name=str(sr.get("name_label", "")),
                bootable=bool(vbd.get("bootable")),
                mode=str(vbd.get("mode", "RW")),
            )
        )
    return sorted(out, key=lambda d: (len(d.userdevice), d.userdevice))


def collect(api: Any) -> Inventory:
    """Read the whole inventory through ``session.xenapi``."""
    pools = api.pool.get_all_records()
    hosts = api.host.get_all_records()
    srs = api.SR.get_all_records()
    vms = api.VM.get_all_records()
    vbds = api.VBD.get_all_records()
    vdis = api.VDI.get_all_records()
    pool = next(iter(pools.values()), {})
    master = hosts.get(pool.get("master", NULL_REF), {})
    # A pool without a name is shown by XenCenter under its master's name.
    pool_name = str(pool.get("name_label") or master.get("name_label", ""))
    inv = Inventory(pool=pool_name)
    inv.hosts = [
        {"uuid": h["uuid"], "name": h.get("name_label", ""), "address": h.get("address", "")}
        for h in hosts.values()
    ]
    inv.srs = [
        {"uuid": s["uuid"], "name": s.get("name_label", ""), "type": s.get("type", "")}
        for s in srs.values()
    ]
    for vm in vms.values():
        if not is_protectable(vm):
            continue
        host_ref = vm.get("resident_on", NULL_REF)
        if host_ref not in hosts:
            host_ref = vm.get("affinity", NULL_REF)
        other = vm.get("other_config") or {}
        inv.vms.append(
            VirtualMachine(
                uuid=str(vm["uuid"]),
                name=str(vm.get("name_label", "")),
                power_state=str(vm.get("power_state", "")),
                host=str(hosts.get(host_ref, {}).get("name_label", "")),
                pool=pool_name,
                folder=str(other.get("folder", "")),
                tags=tuple(str(t) for t in vm.get("tags", [])),
                custom_attributes={
                    k[len(CUSTOM_FIELD_PREFIX) :]: str(v)
                    for k, v in other.items()
                    if k.startswith(CUSTOM_FIELD_PREFIX)
                },
                disks=tuple(disks_of(vm, vbds, vdis, srs)),
                quiesce_possible="snapshot_with_quiesce" in vm.get("allowed_operations", []),
            )
        )
    inv.vms.sort(key=lambda v: (v.name, v.uuid))
    return inv
