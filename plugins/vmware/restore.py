"""VMware restores: a whole VM, disks attached to an existing VM, or disk images downloaded.

Disks travel as monolithic flat VMDKs: a descriptor and its flat extent are uploaded
over the datastore's HTTPS file access (see :mod:`.datastore`), then a new VM is
created on them (``CreateVM_Task``) or an existing one takes them
(``ReconfigVM_Task``). Every check (names, host, datastores and their free space,
networks, controller slots) runs before the first byte is uploaded; a restore that
fails later removes what it uploaded or created.

Recovery points are complete indexes of their disks (incrementals are synthetic
fulls), so a restore reads one point and never replays a chain.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from pyVmomi import vim

from tapir.appliance.plugin_api import (
    Item,
    ItemKind,
    PluginContext,
    PluginError,
    RestoreRequest,
    RestoreResult,
    RestoreSource,
)

from . import connection, placement, snapshots, vmspec
from .connection import ConnectionSettings
from .datastore import DatastoreFiles, DatastorePath
from .restore_options import RestoreSettings, restore_settings
from .vmdk import descriptor, padded_size, stream, write_sparse

#: Unit 7 of a SCSI controller is the controller itself.
_SCSI_UNITS = [u for u in range(16) if u != 7]


def point_config(source: RestoreSource) -> dict[str, Any] | None:
    """The VM configuration stored with the recovery point, when the core offers the point's
    metadata to the restore (``RestoreSource.metadata``); None otherwise."""
    metadata = getattr(source, "metadata", None)
    config = metadata.get("config") if isinstance(metadata, dict) else None
    return config if isinstance(config, dict) else None


def disk_stem(item: Item, taken: set[str]) -> str:
    """The file name stem of a disk (``disk1`` of ``[ds] vm/disk1.vmdk``), unique in ``taken``."""
    file_name = str(item.extra.get("file_name") or "")
    base = file_name.rsplit("/", 1)[-1].rsplit("]", 1)[-1].strip()
    stem = base[: -len(".vmdk")] if base.endswith(".vmdk") else base
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem).strip(".")
    if not stem:
        stem = f"disk{item.extra.get('key', len(taken))}"
    if stem in taken:
        stem = f"{stem}_{item.extra.get('key', len(taken))}"
    taken.add(stem)
    return stem


def _disks(request: RestoreRequest, source: RestoreSource) -> list[Item]:
    disks = [i for i in source.items(request.paths) if i.kind == ItemKind.DISK]
    if not disks:
        raise PluginError("nothing to restore: no disk of the recovery point matches")
    return disks


def restore(
    settings: ConnectionSettings | None,
    request: RestoreRequest,
    source: RestoreSource,
    ctx: PluginContext,
) -> RestoreResult:
    """Restore as the request's options say (see :mod:`.restore_options`)."""
    options = restore_settings(request)
    disks = _disks(request, source)
    ctx.progress.set_total(bytes_total=sum(d.size for d in disks), items_total=len(disks))
    if options.mode == "download":
        return download(request, disks, source, ctx)
    if settings is None:
        raise PluginError("restoring to vSphere needs the endpoint the VM was backed up from")
    with connection.session(settings) as si:
        files = _files(si, settings)
        try:
            if options.mode == "vm":
                return restore_vm(si.content, files, request, options, disks, source, ctx)
            return restore_disks(si.content, files, request, options, disks, source, ctx)
        finally:
            files.close()


def _files(si: Any, settings: ConnectionSettings) -> DatastoreFiles:
    return DatastoreFiles(
        settings.host,
        settings.port,
        connection._ssl_context(settings),
        str(si._stub.cookie or ""),
        "",
        settings.timeout,
    )


# -- download ---------------------------------------------------------------------------


def download(
    request: RestoreRequest, disks: list[Item], source: RestoreSource, ctx: PluginContext
) -> RestoreResult:
    """Each disk as ``<stem>-flat.vmdk`` (a sparse raw image) and its ``<stem>.vmdk``
    descriptor (monolithicFlat) in the target folder."""
    assert request.target is not None
    target = request.target
    taken: set[str] = set()
    plans = [(disk, disk_stem(disk, taken)) for disk in disks]
    existing = [
        str(target / name)
        for _, stem in plans
        for name in (f"{stem}.vmdk", f"{stem}-flat.vmdk")
        if (target / name).exists()
    ]
    if existing and request.overwrite != "always":
        raise PluginError(
            f"refusing to overwrite existing file(s) {existing}; restore elsewhere or set "
            "overwrite to 'always'"
        )
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PluginError(f"cannot create restore folder {target}: {exc}") from None
    result = RestoreResult()
    for disk, stem in plans:
        flat = target / f"{stem}-flat.vmdk"
        ctx.logger.info("downloading %s to %s", disk.path.decode(errors="replace"), flat)
        with _replacing(flat) as temp:
            fd = os.open(temp, os.O_WRONLY | os.O_CLOEXEC)
            try:
                write_sparse(disk, fd, source, ctx, str(flat))
            finally:
                os.close(fd)
        text = descriptor(flat.name, padded_size(disk), "monolithicFlat", _adapter(disk))
        with _replacing(target / f"{stem}.vmdk") as temp:
            temp.write_text(text)
        result.items_restored += 1
        result.bytes_restored += disk.size
        ctx.progress.advance(items_done=1)
    return result


@contextmanager
def _replacing(dest: Path) -> Iterator[Path]:
    """A temporary file beside ``dest``, renamed onto it only when the block succeeds."""
    fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".partial")
    os.close(fd)
    temp = Path(name)
    try:
        yield temp
        os.replace(temp, dest)
    except OSError as exc:
        raise PluginError(f"writing {dest} failed: {exc}") from None
    finally:
        temp.unlink(missing_ok=True)


def _adapter(disk: Item) -> str:
    """The descriptor's adapter type; the VM's controller decides, this is only a hint."""
    return "ide" if disk.extra.get("controller_key") in (200, 201) else "lsilogic"


# -- uploads shared by both vSphere modes ------------------------------------------------


class Uploads:
    """The datastore files a restore created, deleted again if it fails."""

    def __init__(self, content: Any, dc: Any, files: DatastoreFiles, ctx: PluginContext):
        self.content = content
        self.dc = dc
        self.files = files
        self.ctx = ctx
        self.done: list[DatastorePath] = []

    def disk(self, disk: Item, desc: DatastorePath, source: RestoreSource) -> None:
        """Upload the flat extent, then its descriptor (a disk is usable only once whole)."""
        flat = desc.sibling(desc.path.rsplit("/", 1)[-1][: -len(".vmdk")] + "-flat.vmdk")
        size = padded_size(disk)
        self.ctx.logger.info("uploading %s (%d bytes) to %s", disk.path.decode(), size, flat)
        self.done.append(flat)
        self.files.put(flat, size, stream(disk, source, self.ctx, str(flat)))
        text = descriptor(flat.path.rsplit("/", 1)[-1], size, "vmfs", _adapter(disk)).encode()
        self.done.append(desc)
        self.files.put(desc, len(text), [text])

    def remove(self) -> None:
        """Delete every uploaded file; failures are logged (the files are named)."""
        for path in reversed(self.done):
            try:
                task = self.content.fileManager.DeleteDatastoreFile_Task(str(path), self.dc)
                snapshots.wait(self.content, task, f"deleting {path}")
            except Exception as exc:
                self.ctx.logger.error("could not delete %s after the failed restore: %s", path, exc)


def _space(needed: dict[str, int], disk_ds: list[str], disks: list[Item]) -> dict[str, int]:
    for name, disk in zip(disk_ds, disks, strict=True):
        needed[name] = needed.get(name, 0) + padded_size(disk)
    return needed


# -- whole VM ----------------------------------------------------------------------------


def restore_vm(
    content: Any,
    files: DatastoreFiles,
    request: RestoreRequest,
    options: RestoreSettings,
    disks: list[Item],
    source: RestoreSource,
    ctx: PluginContext,
) -> RestoreResult:
    """Create the VM from the stored configuration on uploaded copies of its disks."""
    config = point_config(source)
    if config is None:
        raise PluginError(
            "this recovery point's VM configuration is not available to the restore; "
            "restore the disks with mode=download or mode=disk instead"
        )
    meta = request.asset.metadata
    dc = placement.datacenter(content, str(meta.get("datacenter") or "") or None)
    files.datacenter_path = placement.datacenter_path(content, dc)
    name = options.vm_name or str(config.get("name") or request.asset.name)
    existing = placement.find_vm(content, dc, name)
    if existing is not None and request.overwrite != "always":
        raise PluginError(
            f"a VM named {name!r} exists already in datacenter {dc.name}: choose another name "
            "(restore option vm_name) or set overwrite to 'always' to replace it"
        )
    host = placement.host(content, dc, options.host or str(meta.get("host") or "") or None)
    pool = placement.resource_pool(content, host, options.resource_pool)
    vmx_ds = options.datastore or _vmx_datastore(config, disks)
    disk_ds = [options.datastore or str(d.extra.get("datastore") or vmx_ds) for d in disks]
    stores = {n: placement.datastore(host, n) for n in {vmx_ds, *disk_ds}}
    placement.check_space(stores, _space({vmx_ds: 1024 * 1024}, disk_ds, disks))

    parts = vmspec.SpecParts()
    vmspec.add_controllers(parts, config)
    vmspec.add_nics(parts, config, _network_chooser(host, options, config))
    vmspec.left_out(parts, config)
    taken: set[str] = set()
    stems = [disk_stem(d, taken) for d in disks]
    for disk in disks:
        if int(disk.extra.get("controller_key", -1)) not in parts.controller_keys:
            raise PluginError(
                f"{disk.path.decode()}: its controller {disk.extra.get('controller_key')} is "
                "not in the stored configuration"
            )
    create_name = name if existing is None else _free_vm_name(content, dc, f"{name}-tapir-restore")
    vmx = f"{create_name}.vmx"
    names = [vmx, *(f"{s}.vmdk" for s in stems), *(f"{s}-flat.vmdk" for s in stems)]
    folder = placement.free_folder(files, stores, _safe(create_name), names).name

    uploads = Uploads(content, dc, files, ctx)
    new_vm = None
    try:
        for ds in stores:
            placement.make_directory(content, dc, DatastorePath(ds, folder))
        for disk, stem, ds in zip(disks, stems, disk_ds, strict=True):
            ctx.check_canceled()
            desc = DatastorePath(ds, f"{folder}/{stem}.vmdk")
            uploads.disk(disk, desc, source)
            parts.changes.append(
                vim.vm.device.VirtualDeviceSpec(
                    operation="add",
                    device=vmspec.disk_device(
                        parts.key(),
                        parts.controller_keys[int(disk.extra["controller_key"])],
                        int(disk.extra.get("unit_number") or 0),
                        str(desc),
                        disk.size,
                        disk.extra,
                    ),
                )
            )
            ctx.progress.advance(items_done=1)
        spec = vmspec.config_spec(config, create_name, f"[{vmx_ds}] {folder}/{vmx}", parts)
        task = dc.vmFolder.CreateVM_Task(spec, pool, host)
        new_vm = snapshots.wait(content, task, f"creating VM {create_name}")
        if existing is not None:
            _destroy(content, existing, name)
            snapshots.wait(content, new_vm.Rename_Task(name), f"renaming {create_name} to {name}")
        if options.power_on:
            snapshots.wait(content, new_vm.PowerOnVM_Task(), f"powering on VM {name}")
    except BaseException:
        if new_vm is not None:
            with suppress(Exception):
                # Destroying the new VM deletes its files, the uploaded disks with them.
                snapshots.wait(content, new_vm.Destroy_Task(), f"removing VM {create_name}")
                uploads.done.clear()
        uploads.remove()
        raise
    if parts.left_out:
        ctx.logger.info("not recreated (tied to the original host): %s", ", ".join(parts.left_out))
    ctx.logger.info(
        "restored VM %s (instance UUID %s) on host %s", name, new_vm.config.instanceUuid, host.name
    )
    return RestoreResult(items_restored=len(disks), bytes_restored=sum(d.size for d in disks))


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_. " else "_" for c in name).strip(" .") or "vm"


def _vmx_datastore(config: dict[str, Any], disks: list[Item]) -> str:
    vmx = (config.get("files") or {}).get("vmPathName")
    if vmx:
        with suppress(PluginError):
            return DatastorePath.parse(str(vmx)).datastore
    for disk in disks:
        if disk.extra.get("datastore"):
            return str(disk.extra["datastore"])
    raise PluginError("the original datastore is not known: give the restore option datastore")


def _free_vm_name(content: Any, dc: Any, base: str) -> str:
    for n in range(100):
        name = base if n == 0 else f"{base}-{n}"
        if placement.find_vm(content, dc, name) is None:
            return name
    raise PluginError(f"no free temporary VM name like {base!r}")


def _network_chooser(host: Any, options: RestoreSettings, config: dict[str, Any]) -> Any:
    unknown = set(options.network) - {""} - vmspec.nic_labels(config)
    if unknown:
        raise PluginError(
            f"restore option network names adapters the VM does not have: {sorted(unknown)} "
            f"(it has: {sorted(vmspec.nic_labels(config))})"
        )

    def choose(label: str, backing: dict[str, Any]) -> Any:
        wanted = options.network.get(label) or options.network.get("")
        if wanted:
            return placement.network(host, wanted)
        net = placement.network_by_backing(host, backing)
        if net is None:
            port = backing.get("port") or {}
            was = backing.get("deviceName") or port.get("portgroupKey") or "unknown"
            raise PluginError(
                f"the network of {label} ({was}) does not exist on host {host.name}: map it "
                f"with the restore option network ('{label}=NETWORK' or one network for all)"
            )
        return net

    return choose


def _destroy(content: Any, vm: Any, name: str) -> None:
    if str(vm.runtime.powerState) != "poweredOff":
        snapshots.wait(content, vm.PowerOffVM_Task(), f"powering off VM {name} to replace it")
    snapshots.wait(content, vm.Destroy_Task(), f"removing VM {name} to replace it")


# -- disks attached to an existing VM ----------------------------------------------------


def restore_disks(
    content: Any,
    files: DatastoreFiles,
    request: RestoreRequest,
    options: RestoreSettings,
    disks: list[Item],
    source: RestoreSource,
    ctx: PluginContext,
) -> RestoreResult:
    """Upload the disks beside the target VM and attach them to free controller slots."""
    assert options.vm_name is not None
    dc, vm = _find_anywhere(content, options.vm_name)
    files.datacenter_path = placement.datacenter_path(content, dc)
    config = vm.config
    vmx = DatastorePath.parse(config.files.vmPathName)
    ds_name = options.datastore or vmx.datastore
    host = vm.runtime.host
    stores = {ds_name: placement.datastore(host, ds_name)}
    placement.check_space(stores, _space({}, [ds_name] * len(disks), disks))
    slots = _free_slots(config.hardware.device, len(disks), options.vm_name)
    folder = vmx.path.rsplit("/", 1)[0] if "/" in vmx.path else ""
    taken: set[str] = set()
    descs = []
    for disk in disks:
        stem = disk_stem(disk, taken)
        descs.append(_free_disk_name(files, ds_name, folder, f"{stem}_restored"))

    uploads = Uploads(content, dc, files, ctx)
    try:
        changes = []
        for n, (disk, desc, (ctrl, unit)) in enumerate(zip(disks, descs, slots, strict=True)):
            ctx.check_canceled()
            uploads.disk(disk, desc, source)
            device = vmspec.disk_device(-101 - n, ctrl, unit, str(desc), disk.size, disk.extra)
            changes.append(vim.vm.device.VirtualDeviceSpec(operation="add", device=device))
            ctx.progress.advance(items_done=1)
        task = vm.ReconfigVM_Task(vim.vm.ConfigSpec(deviceChange=changes))
        snapshots.wait(content, task, f"attaching the restored disks to VM {options.vm_name}")
    except BaseException:
        uploads.remove()
        raise
    for disk, desc in zip(disks, descs, strict=True):
        ctx.logger.info("attached %s to VM %s as %s", disk.path.decode(), options.vm_name, desc)
    return RestoreResult(items_restored=len(disks), bytes_restored=sum(d.size for d in disks))


def _find_anywhere(content: Any, name: str) -> tuple[Any, Any]:
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.Datacenter], True)
    try:
        centers = list(view.view)
    finally:
        view.DestroyView()
    for dc in centers:
        vm = placement.find_vm(content, dc, name)
        if vm is not None:
            return dc, vm
    raise PluginError(f"no VM named {name!r} to attach the restored disks to")


def _free_slots(devices: Any, count: int, vm_name: str) -> list[tuple[int, int]]:
    """``count`` free (controller key, unit number) pairs on the VM's SCSI controllers."""
    used = {(d.controllerKey, d.unitNumber) for d in devices if d.controllerKey is not None}
    free = [
        (ctrl.key, unit)
        for ctrl in devices
        if isinstance(ctrl, vim.vm.device.VirtualSCSIController)
        for unit in _SCSI_UNITS
        if (ctrl.key, unit) not in used
    ]
    if len(free) < count:
        raise PluginError(
            f"VM {vm_name} has {len(free)} free SCSI slot(s), the restore needs {count}: "
            "add a SCSI controller to it first"
        )
    return free[:count]


def _free_disk_name(files: DatastoreFiles, ds: str, folder: str, stem: str) -> DatastorePath:
    prefix = f"{folder}/" if folder else ""
    for n in range(100):
        name = stem if n == 0 else f"{stem}_{n}"
        desc = DatastorePath(ds, f"{prefix}{name}.vmdk")
        if not files.exists(desc) and not files.exists(desc.sibling(f"{name}-flat.vmdk")):
            return desc
    raise PluginError(f"no free disk file name like {stem!r} in [{ds}] {folder}")
