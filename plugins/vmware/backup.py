"""An image backup of one VM: snapshot, read each base disk over HTTPS, remove the snapshot.

The snapshot makes the VM's base disks read-only (the VM writes into delta
files meanwhile), so their flat extents can be read through the datastore's
HTTPS file access while the VM runs. The snapshot is removed in every case:
after a success, after a failure, and, for a run that was killed, at the start
of the next run (see :mod:`.snapshots`).

Changed Block Tracking (see :mod:`.changes`) decides what is read: a full
backup reads the allocated areas only, an incremental the areas changed since
the change id stored with the disk in the previous recovery point.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pyVmomi import vim
from pyVmomi.VmomiJSONEncoder import VmomiJSONEncoder

from tapir.appliance.plugin_api import (
    BackupLevel,
    BackupRequest,
    BackupResult,
    BackupSink,
    Extent,
    Item,
    ItemKind,
    PluginContext,
    PluginError,
)

from . import changes, connection, snapshots
from .connection import ConnectionSettings
from .datastore import DatastoreFiles, DatastorePath, flat_extent
from .vddk import VddkDisk, VddkOptions, vddk_options

TRANSPORT = "datastore-https"
VDDK_TRANSPORT = "vddk"
FULL = "full"
INCREMENTAL = "incremental"
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
    """One virtual disk of the snapshot, where its bytes are, and what of it is read."""

    item: Item
    flat: DatastorePath
    #: Areas to read: allocated (full) or changed since ``parent`` (incremental);
    #: None reads every byte (no CBT answer to go by).
    extents: list[Extent] | None = None
    parent: Item | None = None
    mode: str = FULL


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
    files: DatastoreFiles,
    snapshot_config: Any,
    vm_name: str,
    warnings: list[str],
    transport: str = TRANSPORT,
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
                # Where the next incremental starts (None: CBT was not active on the disk).
                "change_id": getattr(backing, "changeId", None) or None,
                "controller_key": dev.controllerKey,
                "unit_number": dev.unitNumber,
                "transport": transport,
            },
        )
        plans.append(DiskPlan(item, flat.file))
    return plans


def _parent_mismatch(parent: Item, item: Item) -> str | None:
    if parent.kind != ItemKind.DISK:
        return "is not a disk"
    if parent.size != item.size:
        return f"had {parent.size} bytes, now {item.size} (resized)"
    if parent.extra.get("uuid") != item.extra.get("uuid"):
        return "was another disk (its uuid changed)"
    if not parent.extra.get("change_id"):
        return "has no change id (Changed Block Tracking was not active then)"
    return None


def _full_plan(plan: DiskPlan, vm: Any, snap: Any, name: str, warnings: list[str]) -> DiskPlan:
    item = plan.item
    if not item.extra.get("change_id"):
        warnings.append(
            f"{name}: Changed Block Tracking is not active on the disk: every byte was read"
        )
        return plan
    try:
        areas = changes.changed_areas(
            vm, snap, int(item.extra["key"]), changes.ALL_AREAS, item.size
        )
    except changes.ChangeIdRefused as exc:
        warnings.append(
            f"{name}: vSphere did not list the allocated areas ({exc}): every byte was read"
        )
        return plan
    return DiskPlan(item, plan.flat, areas, None, FULL)


def plan_reads(
    plans: list[DiskPlan],
    vm: Any,
    snap: Any,
    level: str,
    sink: BackupSink,
    warnings: list[str],
) -> list[DiskPlan]:
    """What to read of each disk, asked of vSphere before any data moves.

    An incremental reads the areas changed since the change id the previous
    recovery point stored with the disk. Without a usable parent, or when
    vSphere refuses that change id (CBT was reset), the disk is read as a full:
    its allocated areas only.
    """
    out = []
    for plan in plans:
        item = plan.item
        name = f"{item.path.decode()} ({item.extra['file_name']})"
        parent = None
        if level == BackupLevel.INCREMENTAL and sink.parent is not None:
            parent = sink.parent.lookup(item.path)
            why = (
                "is not in the previous recovery point (a new disk)"
                if parent is None
                else _parent_mismatch(parent, item)
            )
            if why is not None:
                warnings.append(f"{name}: the disk {why}: full read")
                parent = None
        if parent is not None and item.extra.get("change_id"):
            try:
                areas = changes.changed_areas(
                    vm, snap, int(item.extra["key"]), str(parent.extra["change_id"]), item.size
                )
            except changes.ChangeIdRefused as exc:
                warnings.append(
                    f"{name}: vSphere refused the change id {parent.extra['change_id']} of the "
                    f"previous backup ({exc}); Changed Block Tracking was reset: full read"
                )
            else:
                out.append(DiskPlan(item, plan.flat, areas, parent, INCREMENTAL))
                continue
        out.append(_full_plan(plan, vm, snap, name, warnings))
    return out


class DiskSource(Protocol):
    """Where one disk's bytes are read from during a backup (one transport)."""

    where: str

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes of the disk at ``offset``."""

    def allocated(self) -> list[Extent] | None:
        """The disk's allocated areas when the transport knows them, else None."""


class HttpsDisk:
    """A base disk's flat extent, read with HTTPS Range requests (the default transport)."""

    def __init__(self, files: DatastoreFiles, plan: DiskPlan) -> None:
        self.files, self.flat, self.where = files, plan.flat, str(plan.flat)

    def read(self, offset: int, length: int) -> bytes:
        """Bytes of the flat extent."""
        return self.files.read_range(self.flat, offset, length)

    def allocated(self) -> list[Extent] | None:
        """Unknown: the HTTPS path serves files, not allocation maps."""
        return None


OpenDisk = Callable[[DiskPlan], AbstractContextManager[DiskSource]]


@contextmanager
def _https_disk(files: DatastoreFiles, plan: DiskPlan) -> Iterator[DiskSource]:
    yield HttpsDisk(files, plan)


@contextmanager
def _vddk_disk(
    settings: ConnectionSettings, options: VddkOptions, vm: Any, snap: Any, plan: DiskPlan
) -> Iterator[DiskSource]:
    # Opened in the thread that reads: nbdkit's --exit-with-parent follows it.
    with VddkDisk(
        settings, options, vm._moId, snap._moId, str(plan.item.extra["file_name"])
    ) as disk:
        yield _VddkSource(disk, f"{plan.item.extra['file_name']} (VDDK)")


@dataclass
class _VddkSource:
    disk: VddkDisk
    where: str

    def read(self, offset: int, length: int) -> bytes:
        return self.disk.read(offset, length)

    def allocated(self) -> list[Extent] | None:
        return [Extent(start, length) for start, length in self.disk.allocated_extents()]


def _store(
    plans: list[DiskPlan], open_disk: OpenDisk, sink: BackupSink, ctx: PluginContext
) -> None:
    ctx.progress.set_total(bytes_total=sum(p.item.size for p in plans), items_total=len(plans))
    for plan in plans:
        ctx.check_canceled()
        with open_disk(plan) as source:
            extents = plan.extents
            if extents is None and plan.parent is None:
                # No CBT answer: the transport's allocation map still spares the holes.
                extents = source.allocated()

            def read(offset: int, length: int, source: DiskSource = source) -> bytes:
                ctx.check_canceled()
                data = source.read(offset, length)
                ctx.progress.advance(current=source.where)
                return data

            ctx.logger.info(
                "%s backup of %s (%d bytes) from %s: %s",
                plan.mode,
                plan.item.path.decode(),
                plan.item.size,
                source.where,
                "every byte"
                if extents is None
                else f"{sum(e.length for e in extents)} bytes in {len(extents)} areas",
            )
            sink.add_disk(plan.item, read, extents=extents, parent=plan.parent)


def _area_bytes(plan: DiskPlan) -> int:
    return plan.item.size if plan.extents is None else sum(e.length for e in plan.extents)


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
    """One recovery point of the VM whose instance UUID is ``request.asset.external_id``."""
    result = BackupResult()
    warnings = result.warnings
    if request.level not in (BackupLevel.FULL, BackupLevel.INCREMENTAL):
        # The engine offers log backups only to plugins that claim them; say so anyway.
        warnings.append(f"{request.level} backups do not exist for VMs: made a full backup")
    want_quiesce = job_quiesce(request.options)
    vddk = vddk_options(request.endpoint.options) if request.endpoint is not None else None
    transport = VDDK_TRANSPORT if vddk is not None else TRANSPORT
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
        tracking = changes.tracking_enabled(props.get("config"))
        if not tracking:
            try:
                changes.enable_tracking(content, vm, name)
            except PluginError as exc:
                warnings.append(f"{exc}: every byte of the disks is read")
            else:
                tracking = True
                ctx.logger.info("turned on Changed Block Tracking for VM %s", name)
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
        with ctx.snapshot_window():  # the applications inside are frozen just for this call
            snap, quiesced = _snapshot(content, vm, name, quiesce, warnings)
        label = f"of VM {name}"
        try:
            snap_config = snapshots.vm_properties(content, snap, ["config"])["config"]
            plans = plan_disks(files, snap_config, name, warnings, transport)
            if tracking:
                plans = plan_reads(plans, vm, snap, request.level, sink, warnings)
            open_disk: OpenDisk
            if vddk is not None:
                open_disk = functools.partial(_vddk_disk, settings, vddk, vm, snap)
            else:
                open_disk = functools.partial(_https_disk, files)
            _store(plans, open_disk, sink, ctx)
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
                "transport": transport,
                "changed_block_tracking": tracking,
                "config": config_document(config) if config is not None else None,
                "disks": [
                    dict(
                        p.item.extra,
                        path=p.item.path.decode(),
                        mode=p.mode,
                        areas_bytes=_area_bytes(p),
                    )
                    for p in plans
                ],
            }
        )
    for warning in warnings:
        ctx.logger.warning("%s", warning)
    return result
