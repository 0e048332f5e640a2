"""A full image backup of one VM: snapshot, read each base disk over HTTPS, remove the snapshot.

The snapshot makes the VM's base disks read-only (the VM writes into delta
files meanwhile), so their flat extents can be read through the datastore's
HTTPS file access while the VM runs. The snapshot is removed in every case:
after a success, after a failure, and, for a run that was killed, at the start
of the next run (see :mod:`.snapshots`).
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

from pyVmomi import vim
from pyVmomi.VmomiJSONEncoder import VmomiJSONEncoder

from tapir.appliance.plugin_api import (
    BackupLevel,
    BackupRequest,
    BackupResult,
    BackupSink,
    Item,
    ItemKind,
    PluginContext,
    PluginError,
)

from . import connection, snapshots
from .connection import ConnectionSettings
from .datastore import DatastoreFiles, DatastorePath, flat_extent

TRANSPORT = "datastore-https"
_INDEPENDENT = ("independent_persistent", "independent_nonpersistent")
_VM_PROPERTIES = (
    "name",
    "config",
    "snapshot",
    "runtime.powerState",
    "guest.toolsRunningStatus",
)


@dataclass(frozen=True)
class DiskPlan:
    """One virtual disk of the snapshot and where its bytes are."""

    item: Item
    flat: DatastorePath


def job_quiesce(options: dict[str, object]) -> bool:
    """The job option ``quiesce`` (default false); PluginError when it is not a boolean."""
    value = options.get("quiesce", False)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.lower() in ("true", "yes", "1")
    raise PluginError(f"job option 'quiesce' must be true or false, not {value!r}")


@contextmanager
def vm_lock(state_dir: Path | None, instance_uuid: str) -> Iterator[None]:
    """Only one backup of a VM at a time on this appliance.

    A second run would take the first run's snapshot for an orphan and remove it
    while it is being read.
    """
    if state_dir is None:
        yield
        return
    folder = state_dir / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / f"{instance_uuid}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PluginError(
                f"another backup of VM {instance_uuid} is running on this appliance"
            ) from None
        yield
    finally:
        os.close(fd)


def config_document(config: Any) -> dict[str, Any]:
    """The VM's configuration (``vim.vm.ConfigInfo``) as plain JSON data."""
    return dict(json.loads(json.dumps(config, cls=VmomiJSONEncoder)))


def datacenter_path(content: Any, vm: Any) -> str:
    """The ``dcPath`` of the VM's datacenter: its inventory path below the root folder."""
    obj = snapshots.vm_properties(content, vm, ["parent"]).get("parent")
    while obj is not None and not isinstance(obj, vim.Datacenter):
        obj = snapshots.vm_properties(content, obj, ["parent"]).get("parent")
    if obj is None:
        raise PluginError("the VM is in no datacenter")
    names = []
    while obj is not None and obj != content.rootFolder:
        props = snapshots.vm_properties(content, obj, ["name", "parent"])
        names.append(str(props["name"]))
        obj = props.get("parent")
    return "/".join(reversed(names))


def disk_item_path(key: int, label: str) -> bytes:
    """``disks/<key>-<label>``; a '/' in the label would make a folder, so it is replaced."""
    return f"disks/{key}-{label.replace('/', '_')}".encode()


def _disk_capacity(disk: Any) -> int:
    return int(disk.capacityInBytes or (disk.capacityInKB or 0) * 1024)


def plan_disks(
    files: DatastoreFiles, snapshot_config: Any, vm_name: str, warnings: list[str]
) -> list[DiskPlan]:
    """Every disk of the snapshot, its flat extent located and checked before any data moves."""
    plans = []
    for dev in snapshot_config.hardware.device or ():
        if not isinstance(dev, vim.vm.device.VirtualDisk):
            continue
        label = dev.deviceInfo.label if dev.deviceInfo else f"disk {dev.key}"
        backing = dev.backing
        name = f"{vm_name}: {label}"
        if getattr(backing, "diskMode", None) in _INDEPENDENT:
            warnings.append(
                f"{name} is independent ({backing.diskMode}): snapshots do not cover it, "
                "so it was not backed up"
            )
            continue
        if not isinstance(backing, vim.vm.device.VirtualDisk.FlatVer2BackingInfo):
            raise PluginError(
                f"{name} is a {type(backing).__name__.rsplit('.', 1)[-1]} disk; the datastore "
                "transport reads flat VMDKs only"
            )
        if backing.parent is not None:
            raise PluginError(
                f"{name} is a delta disk on top of {backing.parent.fileName}: the VM has other "
                "snapshots, and the datastore transport reads base disks only; remove or "
                "consolidate them"
            )
        descriptor = DatastorePath.parse(backing.fileName)
        flat = flat_extent(descriptor, files.read_small(descriptor).decode("utf-8", "replace"))
        capacity = _disk_capacity(dev)
        if flat.size < capacity:
            raise PluginError(
                f"{name}: the descriptor {descriptor} declares {flat.size} bytes, "
                f"the disk has {capacity}"
            )
        item = Item(
            path=disk_item_path(int(dev.key), label),
            kind=ItemKind.DISK,
            size=capacity,
            extra={
                "key": int(dev.key),
                "label": label,
                "file_name": backing.fileName,
                "extent": str(flat.file),
                "datastore": descriptor.datastore,
                "capacity_bytes": capacity,
                "thin": getattr(backing, "thinProvisioned", None),
                "disk_mode": getattr(backing, "diskMode", None),
                "uuid": getattr(backing, "uuid", None),
                "controller_key": dev.controllerKey,
                "unit_number": dev.unitNumber,
                "transport": TRANSPORT,
            },
        )
        plans.append(DiskPlan(item, flat.file))
    return plans


def _store(
    plans: list[DiskPlan], files: DatastoreFiles, sink: BackupSink, ctx: PluginContext
) -> None:
    ctx.progress.set_total(bytes_total=sum(p.item.size for p in plans), items_total=len(plans))
    for plan in plans:
        ctx.check_canceled()
        where = str(plan.flat)

        def read(offset: int, length: int, plan: DiskPlan = plan, where: str = where) -> bytes:
            ctx.check_canceled()
            data = files.read_range(plan.flat, offset, length)
            ctx.progress.advance(current=where)
            return data

        ctx.logger.info(
            "reading %s (%d bytes) from %s", plan.item.path.decode(), plan.item.size, where
        )
        sink.add_disk(plan.item, read, extents=None)


def _snapshot(
    content: Any, vm: Any, name: str, quiesce: bool, warnings: list[str]
) -> tuple[Any, bool]:
    if quiesce:
        try:
            return snapshots.create(content, vm, name, quiesce=True), True
        except PluginError as exc:
            # A failed quiesce (VSS writer, fsfreeze) leaves no snapshot behind.
            warnings.append(f"{exc}; took a crash-consistent snapshot instead")
    return snapshots.create(content, vm, name, quiesce=False), False


def _quiesce_possible(props: dict[str, Any]) -> str | None:
    """None when VMware Tools can quiesce the VM, else why not."""
    if str(props.get("runtime.powerState")) != "poweredOn":
        return "the VM is not powered on"
    tools = str(props.get("guest.toolsRunningStatus"))
    if tools != "guestToolsRunning":
        return f"VMware Tools are not running in it ({tools})"
    return None


def backup_vm(
    settings: ConnectionSettings, request: BackupRequest, sink: BackupSink, ctx: PluginContext
) -> BackupResult:
    """One full recovery point of the VM whose instance UUID is ``request.asset.external_id``."""
    result = BackupResult()
    warnings = result.warnings
    if request.level != BackupLevel.FULL:
        # The engine offers incrementals only to plugins that claim them; say so anyway.
        warnings.append(f"{request.level} backups are not supported yet: made a full backup")
    want_quiesce = job_quiesce(request.options)
    uuid = request.asset.external_id
    with vm_lock(ctx.state_dir, uuid), connection.session(settings) as si:
        content = si.content
        vm = content.searchIndex.FindByUuid(None, uuid, True, True)
        if vm is None:
            raise PluginError(
                f"VM {request.asset.name} (instance UUID {uuid}) is not on {settings.address} "
                "any more (deleted, or moved to another vCenter?)"
            )
        props = snapshots.vm_properties(content, vm, _VM_PROPERTIES)
        name = str(props.get("name", request.asset.name))
        for orphan in snapshots.remove_orphans(content, vm, name):
            warnings.append(f"removed snapshot {orphan} of VM {name}, left by an earlier run")
        others = [s.name for s in snapshots.snapshots_of(content, vm)]
        if others:
            raise PluginError(
                f"VM {name} has snapshots ({', '.join(others)}); the datastore transport reads "
                "base disks only, which would miss what was written since; remove or "
                "consolidate them first"
            )
        quiesce = want_quiesce
        if want_quiesce and (why := _quiesce_possible(props)) is not None:
            warnings.append(f"quiesce asked for VM {name}, but {why}: crash-consistent snapshot")
            quiesce = False
        files = DatastoreFiles(
            settings.host,
            settings.port,
            connection._ssl_context(settings),
            str(si._stub.cookie or ""),
            datacenter_path(content, vm),
            settings.timeout,
        )
        snap, quiesced = _snapshot(content, vm, name, quiesce, warnings)
        label = f"of VM {name}"
        try:
            snap_config = snapshots.vm_properties(content, snap, ["config"])["config"]
            plans = plan_disks(files, snap_config, name, warnings)
            _store(plans, files, sink, ctx)
        except BaseException:
            files.close()
            try:
                snapshots.remove(content, snap, label)
            except Exception as exc:
                ctx.logger.error(
                    "could not remove the snapshot %s (%s); the next run removes it", label, exc
                )
            raise
        files.close()
        try:
            snapshots.remove(content, snap, label)
        except Exception as exc:
            warnings.append(
                f"could not remove the backup snapshot {label} ({exc}); the next run removes it"
            )
        # The snapshot's own configuration: the one that goes with the disks read.
        config = snap_config if snap_config is not None else props.get("config")
        result.metadata.update(
            {
                "vm": {"name": name, "instance_uuid": uuid, "moref": vm._moId},
                "snapshot": {"quiesced": quiesced, "memory": False},
                "transport": TRANSPORT,
                "config": config_document(config) if config is not None else None,
                "disks": [dict(p.item.extra, path=p.item.path.decode()) for p in plans],
            }
        )
    for warning in warnings:
        ctx.logger.warning("%s", warning)
    return result
