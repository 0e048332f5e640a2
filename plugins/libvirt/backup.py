"""Backing up one domain: plan full or incremental per disk, read the NBD exports, store.

A recovery point holds ``domain.xml`` (the domain's persistent definition) and one
``disks/<target>`` item per writable disk. Each disk item records the checkpoint
created with it, which the next incremental reads changes since.
"""

from __future__ import annotations

import bisect
import os
import shutil
import time
from dataclasses import dataclass

import libvirt

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

from . import checkpoints, push
from .connection import connect, describe, lookup_domain
from .domainxml import Disk, parse_domain
from .inventory import power_state
from .job import BackupJob, CheckpointBroken, DiskMode, begin, domain_lock, refuse_if_busy
from .nbd_client import ALLOCATION, STATE_DIRTY, STATE_ZERO, NbdExport, dirty_bitmap_context
from .options import ConnectionSettings, quiesce_wanted

DOMAIN_XML = b"domain.xml"
FULL = "full"
INCREMENTAL = "incremental"
_RUNNING = ("running", "paused", "blocked")


def disk_path(target: str) -> bytes:
    """The item path of disk ``target``: ``disks/<target>``."""
    return b"disks/" + target.encode()


@dataclass
class DiskPlan:
    """What will be read of one disk, decided before the job begins."""

    disk: Disk
    size: int
    parent: Item | None  # set: incremental since parent.extra["checkpoint"]


def _capacity(dom: libvirt.virDomain, disk: Disk) -> int:
    try:
        return int(dom.blockInfo(disk.target)[0])
    except libvirt.libvirtError as exc:
        raise PluginError(f"{dom.name()}: size of disk {disk.target}: {describe(exc)}") from None


def plan_disks(
    dom: libvirt.virDomain, disks: list[Disk], level: str, sink: BackupSink, warnings: list[str]
) -> tuple[list[DiskPlan], str | None]:
    """Per disk, full or incremental; returns the plans and the checkpoint read since."""
    plans = [DiskPlan(d, _capacity(dom, d), None) for d in disks]
    if level != BackupLevel.INCREMENTAL:
        return plans, None
    if sink.parent is None:
        warnings.append("incremental asked but there is no previous recovery point: full backup")
        return plans, None
    parents = {p.disk.target: sink.parent.lookup(disk_path(p.disk.target)) for p in plans}
    recorded = {
        str(item.extra["checkpoint"])
        for item in parents.values()
        if item is not None and item.extra.get("checkpoint")
    }
    if len(recorded) != 1:
        warnings.append(
            "the previous recovery point records no checkpoint of this domain: full backup"
        )
        return plans, None
    since = recorded.pop()
    if since not in checkpoints.names(dom):
        warnings.append(
            f"checkpoint {since} of the previous backup is gone from the domain "
            "(deleted, or the domain was redefined): full backup"
        )
        return plans, None
    for plan in plans:
        parent = parents[plan.disk.target]
        target = plan.disk.target
        if not plan.disk.supports_checkpoints:
            warnings.append(f"disk {target} is {plan.disk.format}, not qcow2: read in full")
        elif parent is None or parent.extra.get("checkpoint") != since:
            warnings.append(f"disk {target} is not in the previous recovery point: read in full")
        elif parent.size != plan.size:
            warnings.append(
                f"disk {target} had {parent.size} bytes, now {plan.size} (resized): read in full"
            )
        else:
            plan.parent = parent
    if all(p.parent is None for p in plans):
        return plans, None
    return plans, since


def _disk_item(plan: DiskPlan, checkpoint: str | None) -> Item:
    disk = plan.disk
    return Item(
        path=disk_path(disk.target),
        kind=ItemKind.DISK,
        mode=0o600,
        mtime_ns=time.time_ns(),
        size=plan.size,
        extra={
            "target": disk.target,
            "format": disk.format,
            "source": disk.source,
            "bus": disk.bus,
            "checkpoint": checkpoint if disk.supports_checkpoints else None,
        },
    )


def covered(extents: list[Extent], offset: int, length: int) -> bool:
    """Whether the sorted, merged ``extents`` hold all of ``[offset, offset + length)``."""
    index = bisect.bisect_right([e.offset for e in extents], offset) - 1
    return index >= 0 and extents[index].end >= offset + length


def _source(job: BackupJob, plan: DiskPlan, incremental: bool) -> tuple[NbdExport, list[Extent]]:
    """The disk's data and the extents to store, from the NBD export or the pushed copy."""
    target = plan.disk.target
    if job.pushed is not None:
        size, extents = push.changed_extents(job.pushed[target], incremental)
        export = push.open_copy(job.pushed[target])
        if size != export.size:
            export.close()
            raise PluginError(f"the pushed copy of {target} has {export.size} bytes, not {size}")
        return export, extents
    context = dirty_bitmap_context(target) if incremental else ALLOCATION
    srv = job.server
    export = NbdExport(target, [context], socket=srv.socket, host=srv.host, port=srv.port)
    try:
        if incremental:
            return export, export.extents(context, STATE_DIRTY)
        return export, export.extents(context, STATE_ZERO, invert=True)
    except BaseException:
        export.close()
        raise


def _read_disk(
    job: BackupJob, plan: DiskPlan, checkpoint: str | None, sink: BackupSink, ctx: PluginContext
) -> dict[str, object]:
    incremental = plan.parent is not None
    export, extents = _source(job, plan, incremental)
    # A pushed incremental copy holds only the changed clusters: anything else of it
    # reads as zeros, which are not the disk's data.
    partial = job.pushed is not None and incremental
    return _store_disk(job.dom.name(), plan, export, extents, checkpoint, partial, sink, ctx)


def _store_disk(
    domain: str,
    plan: DiskPlan,
    export: NbdExport,
    extents: list[Extent],
    checkpoint: str | None,
    partial: bool,
    sink: BackupSink,
    ctx: PluginContext,
) -> dict[str, object]:
    target = plan.disk.target
    mode = INCREMENTAL if plan.parent is not None else FULL
    with export:
        if export.size != plan.size:
            raise PluginError(
                f"disk {target} changed size while the backup began "
                f"({plan.size} became {export.size} bytes)"
            )
        done = 0

        def read(offset: int, length: int) -> bytes:
            nonlocal done
            ctx.check_canceled()
            if partial and not covered(extents, offset, length):
                raise PluginError(
                    f"push mode: the pool asked for data of {target} outside the changed "
                    f"areas (at byte {offset}): its medium cannot merge them with the parent "
                    "backup's chunks (a tape pool); use pull mode, or a full backup"
                )
            data = export.read(offset, length)
            done += len(data)
            ctx.progress.advance(current=f"{domain}:{target}")
            return data

        ctx.logger.info(
            "%s: %s backup of %s, %d bytes in %d extents",
            domain,
            mode,
            target,
            sum(e.length for e in extents),
            len(extents),
        )
        sink.add_disk(_disk_item(plan, checkpoint), read, extents=extents, parent=plan.parent)
    return {
        "path": disk_path(target).decode(),
        "target": target,
        "format": plan.disk.format,
        "source": plan.disk.source,
        "virtual_size": plan.size,
        "mode": mode,
        "extents": len(extents),
        # What the disk's extents hold, and what the engine asked to read of them
        # (it may read whole chunks where it has no parent chunk to merge with).
        "bytes_changed": sum(e.length for e in extents),
        "bytes_read": done,
    }


def _offline(
    dom: libvirt.virDomain,
    definition: str,
    sink: BackupSink,
    ctx: PluginContext,
    warnings: list[str],
) -> list[dict[str, object]]:
    """A shut-off domain: its image files read through a private read-only qemu-nbd.

    The read-only open holds QEMU's shared lock, so the domain cannot start and
    write while its disks are read.
    """
    name = dom.name()
    disks = [d for d in parse_domain(definition).disks if d.backed_up]
    if not disks:
        raise PluginError(f"domain {name} has no writable disk to back up")
    unreadable = [
        d.target
        for d in disks
        if d.type != "file" or not d.source or not os.access(d.source, os.R_OK)
    ]
    if unreadable:
        raise PluginError(
            f"domain {name} is shut off and its disks {', '.join(unreadable)} are not image "
            "files readable here: offline backups read the files directly (Tapir on the "
            "libvirt host, or the same paths mounted); start the domain to back it up online"
        )
    qemu_nbd = shutil.which("qemu-nbd")
    if qemu_nbd is None:
        raise PluginError("offline backups need qemu-nbd (Debian package qemu-utils)")
    warnings.append(
        f"domain {name} is shut off: full backup of its image files (no checkpoint; "
        "the next backup of the running domain is a full one)"
    )
    exports = []
    try:
        for disk in disks:
            fmt = ["--format", disk.format] if disk.format else []
            command = [qemu_nbd, "--read-only", *fmt, str(disk.source)]
            exports.append(NbdExport("", [ALLOCATION], command=command))
    except BaseException:
        for export in exports:
            export.close()
        raise
    ctx.progress.set_total(bytes_total=sum(e.size for e in exports), items_total=len(exports))
    read = []
    for disk, export in zip(disks, exports, strict=True):
        plan = DiskPlan(disk, export.size, None)
        try:
            extents = export.extents(ALLOCATION, STATE_ZERO, invert=True)
        except BaseException:
            export.close()
            raise
        read.append(_store_disk(name, plan, export, extents, None, False, sink, ctx))
    _store_xml(definition, sink)
    return read


def _store_xml(xml: str, sink: BackupSink) -> None:
    data = xml.encode()
    writer = sink.open_file(
        Item(
            path=DOMAIN_XML, kind=ItemKind.FILE, mode=0o600, mtime_ns=time.time_ns(), size=len(data)
        )
    )
    writer.write(data)
    writer.close()


def _begin(
    dom: libvirt.virDomain,
    settings: ConnectionSettings,
    plans: list[DiskPlan],
    since: str | None,
    others: list[Disk],
    checkpoint: str | None,
    quiesce: bool,
    ctx: PluginContext,
    warnings: list[str],
) -> BackupJob:
    modes = [DiskMode(p.disk, since if p.parent is not None else None) for p in plans]
    # Applications first (they flush to the file systems), then the file systems.
    with ctx.snapshot_window():
        frozen = False
        if quiesce:
            try:
                dom.fsFreeze(None, 0)
                frozen = True
            except libvirt.libvirtError as exc:
                warnings.append(
                    f"quiesce asked but the guest agent did not freeze the file systems "
                    f"({describe(exc)}): the backup is crash-consistent"
                )
        try:
            return begin(dom, settings, modes, others, checkpoint, ctx)
        finally:
            if frozen:
                try:
                    dom.fsThaw(None, 0)
                except libvirt.libvirtError as exc:
                    warnings.append(f"thawing the guest's file systems failed: {describe(exc)}")


def backup_domain(
    settings: ConnectionSettings, request: BackupRequest, sink: BackupSink, ctx: PluginContext
) -> BackupResult:
    """Write one recovery point of the domain ``request.asset`` (docs/plugins/libvirt.md)."""
    result = BackupResult()
    quiesce = quiesce_wanted(request.options)
    asset = request.asset
    with connect(settings) as conn:
        dom = lookup_domain(conn, asset.external_id, asset.name)
        uuid, name = dom.UUIDString(), dom.name()
        with domain_lock(ctx, uuid, name):
            state = power_state(dom)
            definition = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
            if state == "shutoff":
                read = _offline(dom, definition, sink, ctx, result.warnings)
                return _finish(result, ctx, name, uuid, settings, None, None, "offline", read)
            if state not in _RUNNING:
                raise PluginError(
                    f"domain {name} is {state}: back it up when it runs or is shut off"
                )
            refuse_if_busy(dom)
            live = parse_domain(dom.XMLDesc(0))
            disks = [d for d in live.disks if d.backed_up]
            others = [d for d in live.disks if not d.backed_up]
            if not disks:
                raise PluginError(f"domain {name} has no writable disk to back up")
            for disk in others:
                ctx.logger.info("%s: disk %s (%s) is not backed up", name, disk.target, disk.device)
            plans, since = plan_disks(dom, disks, request.level, sink, result.warnings)
            checkpoint = (
                checkpoints.new_name() if any(d.supports_checkpoints for d in disks) else None
            )
            try:
                job = _begin(
                    dom, settings, plans, since, others, checkpoint, quiesce, ctx, result.warnings
                )
            except CheckpointBroken as exc:
                broken = checkpoints.forget_all(dom, ctx)
                result.warnings.append(
                    f"the checkpoints of domain {name} are broken ({exc}; a QEMU stopped "
                    f"without saving its bitmaps): forgot {', '.join(broken)}, full backup"
                )
                for plan in plans:
                    plan.parent = None
                since = None
                job = _begin(
                    dom, settings, plans, None, others, checkpoint, quiesce, ctx, result.warnings
                )
            ctx.progress.set_total(bytes_total=sum(p.size for p in plans), items_total=len(plans))
            try:
                if job.pushed is not None:
                    job.wait_pushed(ctx)
                read = [_read_disk(job, plan, checkpoint, sink, ctx) for plan in plans]
                if not dom.isActive():
                    raise PluginError(f"domain {name} stopped during the backup")
                _store_xml(definition, sink)
            except BaseException:
                job.end(ctx)
                if checkpoint is not None:
                    # No recovery point will record it: the next run goes on from `since`.
                    checkpoints.delete(dom, checkpoint, ctx, metadata_only=not dom.isActive())
                raise
            job.end(ctx)
            if checkpoint is not None:
                keep = {checkpoint} | ({since} if since else set())
                removed = checkpoints.remove_stale(dom, keep, ctx)
                if removed:
                    ctx.logger.info("%s: removed stale checkpoints %s", name, ", ".join(removed))
    return _finish(result, ctx, name, uuid, settings, checkpoint, since, settings.backup_mode, read)


def _finish(
    result: BackupResult,
    ctx: PluginContext,
    name: str,
    uuid: str,
    settings: ConnectionSettings,
    checkpoint: str | None,
    since: str | None,
    mode: str,
    read: list[dict[str, object]],
) -> BackupResult:
    for warning in result.warnings:
        ctx.logger.warning("%s", warning)
    result.metadata.update(
        {
            "domain": name,
            "uuid": uuid,
            "host_uri": settings.uri,
            "checkpoint": checkpoint,
            "since_checkpoint": since,
            "backup_mode": mode,
            "disks": read,
        }
    )
    return result
