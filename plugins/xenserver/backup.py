"""An image backup of one VM: snapshot, export each VDI, keep only CBT metadata, clean up.

Full: every snapshot VDI is read whole, over NBD where the pool serves it (see
:mod:`.nbd`), else over ``/export_raw_vdi`` (runs of zeros become holes).
Incremental: for a disk whose previous recovery point names the snapshot VDI it
was read from, ``VDI.list_changed_blocks`` between that
(data-destroyed) snapshot and the new one gives the changed 64 KiB blocks, and
only those are read; the engine references the parent's other chunks. After a
successful read the new snapshot VDIs are data-destroyed (``VDI.data_destroy``:
only their CBT metadata stays, as the next run's reference) and the snapshot VM
is destroyed. After a failure the snapshot and all its VDIs are destroyed.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import XenAPI

from tapir.appliance.plugin_api import (
    BackupLevel,
    BackupRequest,
    BackupResult,
    BackupSink,
    ConnectionFailed,
    Extent,
    Item,
    ItemKind,
    PluginContext,
    PluginError,
)

from . import connection, snapshots
from .cbt import changed_extents
from .connection import Connection, ConnectionSettings, failure_code, failure_text
from .nbd import NbdInfo, NbdReader
from .options import as_bool
from .transfer import VdiReader

TRANSPORT = "export_raw_vdi"
NBD = "nbd"
CONFIG_PATH = b"vm.json"
#: The VM fields kept with a recovery point (enough to create the VM again).
VM_CONFIG_FIELDS = (
    "uuid",
    "name_label",
    "name_description",
    "user_version",
    "is_a_template",
    "memory_static_max",
    "memory_dynamic_max",
    "memory_dynamic_min",
    "memory_static_min",
    "VCPUs_params",
    "VCPUs_max",
    "VCPUs_at_startup",
    "actions_after_shutdown",
    "actions_after_reboot",
    "actions_after_crash",
    "PV_bootloader",
    "PV_kernel",
    "PV_ramdisk",
    "PV_args",
    "PV_bootloader_args",
    "PV_legacy_args",
    "HVM_boot_policy",
    "HVM_boot_params",
    "HVM_shadow_multiplier",
    "platform",
    "PCI_bus",
    "other_config",
    "recommendations",
    "xenstore_data",
    "ha_always_run",
    "ha_restart_priority",
    "tags",
    "blocked_operations",
    "protection_policy",
    "is_snapshot_from_vmpp",
    "appliance",
    "start_delay",
    "shutdown_delay",
    "order",
    "suspend_SR",
    "version",
    "generation_id",
    "hardware_platform_version",
    "has_vendor_device",
    "reference_label",
    "domain_type",
    "NVRAM",
)


@dataclass
class DiskPlan:
    """One disk of the snapshot: what is read, and against which parent."""

    item: Item
    snapshot_vdi: str  # reference of the new snapshot VDI
    original_vdi: str  # reference of the VM's own VDI
    cbt: bool
    extents: list[Extent] | None
    parent: Item | None
    note: str | None = None


def job_bool(options: dict[str, object], name: str, default: bool) -> bool:
    """A boolean job option; PluginError when it is not a boolean."""
    return as_bool(options.get(name, default), name, "job option")


@contextmanager
def vm_lock(state_dir: Path | None, vm_uuid: str) -> Iterator[None]:
    """One backup of a VM at a time on this appliance (a second would remove the first's
    snapshot as an orphan)."""
    if state_dir is None:
        yield
        return
    folder = state_dir / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / f"{vm_uuid}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PluginError(
                f"another backup of VM {vm_uuid} is running on this appliance"
            ) from None
        yield
    finally:
        os.close(fd)


def vm_config(record: dict[str, Any]) -> dict[str, Any]:
    """The VM record's configuration fields, as plain JSON-able data."""
    return {k: _plain(record[k]) for k in VM_CONFIG_FIELDS if k in record}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def disk_path(userdevice: str, vdi_uuid: str) -> bytes:
    """``disks/<device number>-<VDI uuid>``: stable across backups of the same disk."""
    return f"disks/{userdevice}-{vdi_uuid}".encode()


def enable_cbt(api: Any, vm_record: dict[str, Any], notes: list[str]) -> set[str]:
    """Turn CBT on for every disk VDI of the VM where the SR allows it; the VDIs with CBT."""
    enabled = set()
    for vbd in vm_record["VBDs"]:
        rec = api.VBD.get_record(vbd)
        if rec.get("type") != "Disk" or rec.get("empty"):
            continue
        vdi = rec["VDI"]
        vdi_rec = api.VDI.get_record(vdi)
        if vdi_rec.get("cbt_enabled"):
            enabled.add(str(vdi))
            continue
        try:
            api.VDI.enable_cbt(vdi)
            enabled.add(str(vdi))
        except XenAPI.Failure as exc:
            if failure_code(exc) != "SR_OPERATION_NOT_SUPPORTED":
                raise
            sr_name = api.SR.get_name_label(vdi_rec["SR"])
            notes.append(
                f"disk {vdi_rec.get('name_label', '')} ({vdi_rec['uuid']}): its SR {sr_name!r} "
                "does not support changed block tracking; every backup of it reads the "
                "whole disk (full backup)"
            )
    return enabled


def _cbt_reference(api: Any, parent: Item | None) -> str | None:
    """The previous snapshot VDI named by the parent item, if it still exists."""
    if parent is None:
        return None
    ref_uuid = parent.extra.get("cbt_snapshot_uuid")
    if not isinstance(ref_uuid, str):
        return None
    try:
        return str(api.VDI.get_by_uuid(ref_uuid))
    except XenAPI.Failure as exc:
        if failure_code(exc) in ("UUID_INVALID", "HANDLE_INVALID"):
            return None
        raise


def plan_disks(
    api: Any,
    snap: str,
    level: str,
    sink: BackupSink,
    cbt_vdis: set[str],
    notes: list[str],
) -> list[DiskPlan]:
    """Every disk of the snapshot, and whether it is read whole or by changed blocks."""
    plans = []
    for vbd in api.VM.get_VBDs(snap):
        vbd_rec = api.VBD.get_record(vbd)
        if vbd_rec.get("type") != "Disk" or vbd_rec.get("empty"):
            continue
        snap_vdi = str(vbd_rec["VDI"])
        rec = api.VDI.get_record(snap_vdi)
        original = str(rec["snapshot_of"])
        orig_uuid = api.VDI.get_uuid(original)
        size = int(rec["virtual_size"])
        cbt = original in cbt_vdis
        item = Item(
            path=disk_path(str(vbd_rec["userdevice"]), orig_uuid),
            kind=ItemKind.DISK,
            size=size,
            extra={
                "vdi_uuid": orig_uuid,
                "name": rec.get("name_label", ""),
                "userdevice": str(vbd_rec["userdevice"]),
                "bootable": bool(vbd_rec.get("bootable")),
                "mode": vbd_rec.get("mode", "RW"),
                "virtual_size": size,
                "sr_uuid": api.SR.get_uuid(rec["SR"]),
                "sharable": bool(rec.get("sharable")),
                "transport": TRANSPORT,
            },
        )
        if cbt:
            item.extra["cbt_snapshot_uuid"] = rec["uuid"]
        plan = DiskPlan(item, snap_vdi, original, cbt, None, None)
        plans.append(plan)
        if level != BackupLevel.INCREMENTAL or sink.parent is None:
            continue
        parent = sink.parent.lookup(item.path)
        label = f"disk {item.path.decode()}"
        if parent is None:
            plan.note = f"{label} is not in the previous recovery point: full read"
        elif parent.size != size:
            plan.note = f"{label} was resized ({parent.size} -> {size} bytes): full read"
        elif not cbt:
            plan.note = f"{label} has no changed block tracking: full read"
        elif (previous := _cbt_reference(api, parent)) is None:
            plan.note = (
                f"{label}: the previous snapshot's CBT metadata is gone (removed, or CBT was "
                "reset): full read"
            )
        else:
            try:
                bitmap = api.VDI.list_changed_blocks(previous, snap_vdi)
            except XenAPI.Failure as exc:
                plan.note = f"{label}: list_changed_blocks failed ({failure_text(exc)}): full read"
            else:
                plan.extents = changed_extents(str(bitmap), size)
                plan.parent = parent
        if plan.note:
            notes.append(plan.note)
    return plans


Reader = VdiReader | NbdReader


def open_reader(conn: Connection, vdi: str, size: int, ctx: PluginContext) -> Reader:
    """NBD where the pool serves the VDI over NBD (exact ranges), else ``/export_raw_vdi``."""
    infos = [NbdInfo.from_record(r) for r in conn.api.VDI.get_nbd_info(vdi)]
    for info in infos:
        try:
            reader = NbdReader(info, conn.settings.timeout)
        except ConnectionFailed as exc:
            ctx.logger.warning("%s; trying the next way to read VDI %s", exc, vdi)
            continue
        if reader.size != size:
            reader.close()
            raise PluginError(
                f"{reader.where}: the export of VDI {vdi} has {reader.size} bytes, not {size}"
            )
        return reader
    return VdiReader(conn.settings, conn.ref, vdi, size)


def _store(
    conn: Connection, plans: list[DiskPlan], sink: BackupSink, ctx: PluginContext
) -> list[dict[str, object]]:
    ctx.progress.set_total(bytes_total=sum(p.item.size for p in plans), items_total=len(plans))
    report = []
    for plan in plans:
        ctx.check_canceled()
        reader = open_reader(conn, plan.snapshot_vdi, plan.item.size, ctx)
        plan.item.extra["transport"] = NBD if isinstance(reader, NbdReader) else TRANSPORT
        where = plan.item.path.decode()

        def read(offset: int, length: int, reader: Reader = reader, where: str = where) -> bytes:
            ctx.check_canceled()
            data = reader.read(offset, length)
            ctx.progress.advance(current=where)
            return data

        mode = "incremental" if plan.parent is not None else "full"
        wanted = sum(e.length for e in plan.extents) if plan.extents is not None else plan.item.size
        ctx.logger.info("%s: %s read of %d bytes", where, mode, wanted)
        try:
            sink.add_disk(plan.item, read, extents=plan.extents, parent=plan.parent)
        finally:
            reader.close()
        report.append(
            dict(
                plan.item.extra,
                path=where,
                mode=mode,
                bytes_changed=wanted,
                bytes_received=reader.bytes_received,
                ranged=reader.ranged,
            )
        )
    return report


def _store_config(record: dict[str, Any], sink: BackupSink) -> None:
    """The VM's configuration as ``vm.json`` beside its disks (a restore creates the VM
    from it)."""
    data = json.dumps(vm_config(record), indent=1, sort_keys=True).encode()
    writer = sink.open_file(Item(path=CONFIG_PATH, kind=ItemKind.FILE, mode=0o600, size=len(data)))
    writer.write(data)
    writer.close()


def _finish(api: Any, snap: str, plans: list[DiskPlan], warnings: list[str]) -> None:
    """After a good read: drop the snapshot, keep each CBT snapshot VDI's metadata only."""
    cbt_snaps = {p.snapshot_vdi for p in plans if p.cbt}
    for problem in snapshots.remove(api, snap, keep=lambda vdi: vdi in cbt_snaps):
        warnings.append(f"{problem}; the next run removes what is left")
    for plan in plans:
        if not plan.cbt:
            continue
        try:
            api.VDI.data_destroy(plan.snapshot_vdi)
        except XenAPI.Failure as exc:
            warnings.append(
                f"VDI.data_destroy of the snapshot of {plan.item.path.decode()} failed "
                f"({failure_text(exc)}); the next run removes it and reads the disk whole"
            )
            continue
        # Older CBT references of this disk are replaced by the new one.
        for old in api.VDI.get_snapshots(plan.original_vdi):
            if old == plan.snapshot_vdi:
                continue
            rec = api.VDI.get_record(old)
            if (
                rec.get("type") == snapshots.CBT_METADATA
                and rec.get("name_description") == snapshots.VDI_DESCRIPTION
            ):
                api.VDI.destroy(old)


def backup_vm(
    settings: ConnectionSettings, request: BackupRequest, sink: BackupSink, ctx: PluginContext
) -> BackupResult:
    """One recovery point of the VM whose UUID is ``request.asset.external_id``."""
    result = BackupResult()
    warnings = result.warnings
    want_quiesce = job_bool(request.options, "quiesce", False)
    want_cbt = job_bool(request.options, "cbt", True)
    uuid = request.asset.external_id
    with vm_lock(ctx.state_dir, uuid), connection.session(settings) as conn:
        api = conn.api
        try:
            vm = api.VM.get_by_uuid(uuid)
        except XenAPI.Failure as exc:
            if failure_code(exc) != "UUID_INVALID":
                raise
            raise PluginError(
                f"VM {request.asset.name} ({uuid}) is not in the pool at {conn.settings.address} "
                "any more (deleted, or moved to another pool?)"
            ) from None
        record = api.VM.get_record(vm)
        name = str(record["name_label"])
        for orphan in snapshots.remove_orphans(api, vm):
            warnings.append(f"removed {orphan} of VM {name}, left by an earlier run")
        cbt_vdis = enable_cbt(api, record, warnings) if want_cbt else set()
        quiesce = False
        if want_quiesce:
            if "snapshot_with_quiesce" in record.get("allowed_operations", []):
                quiesce = True
            else:
                warnings.append(
                    f"quiesce asked for VM {name}, but it does not allow a quiesced snapshot "
                    "(no VSS provider in the guest, or not running): crash-consistent snapshot"
                )
        with ctx.snapshot_window():  # the applications inside are frozen just for this
            try:
                snap = snapshots.create(api, vm, quiesce)
            except XenAPI.Failure as exc:
                if not quiesce:
                    raise
                warnings.append(f"quiesced snapshot failed ({failure_text(exc)}): crash-consistent")
                quiesce = False
                snap = snapshots.create(api, vm, False)
        try:
            notes: list[str] = []
            plans = plan_disks(api, snap, request.level, sink, cbt_vdis, notes)
            warnings.extend(notes)
            disks = _store(conn, plans, sink, ctx)
            _store_config(record, sink)
        except BaseException:
            try:
                problems = snapshots.remove(api, snap)
            except Exception as exc:  # the connection itself may be gone
                problems = [str(exc)]
            for problem in problems:
                ctx.logger.error("snapshot of VM %s not removed: %s", name, problem)
            raise
        _finish(api, snap, plans, warnings)
        result.metadata.update(
            {
                "vm": vm_config(record),
                "pool": conn.settings.address,
                "snapshot": {"quiesced": quiesce, "memory": False},
                "transport": sorted({str(d["transport"]) for d in disks}),
                "disks": disks,
            }
        )
    for warning in warnings:
        ctx.logger.warning("%s", warning)
    return result
