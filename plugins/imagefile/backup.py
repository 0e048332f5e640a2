"""Backing up an image set: one disk item per image, full or from changed extents."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

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

from .extents import (
    check_within,
    load_changed_extents,
    qcow2_allocated_extents,
    raw_allocated_extents,
)
from .formats import RAW, ImageInfo, open_image, probe_image
from .options import ImageSet
from .readers import open_reader

FULL = "full"
INCREMENTAL = "incremental"


def disk_path(index: int, image: Path) -> bytes:
    """The item path of the ``index``-th image: ``disks/<n>-<basename>``."""
    return b"disks/%d-%s" % (index, os.fsencode(image.name))


@dataclass
class DiskPlan:
    """What will be read of one image, decided before any data moves."""

    info: ImageInfo
    item: Item
    mode: str  # FULL or INCREMENTAL
    extents: list[Extent]
    parent: Item | None


def allocated_extents(info: ImageInfo) -> list[Extent]:
    """The areas of an image that hold data (the rest is stored as holes)."""
    if info.format != RAW:
        return qcow2_allocated_extents(info.path, info.virtual_size)
    fd = open_image(info.path)
    try:
        return raw_allocated_extents(fd, info.virtual_size)
    except OSError as exc:
        raise PluginError(f"cannot map the data areas of {info.path}: {exc.strerror}") from None
    finally:
        os.close(fd)


def _disk_item(index: int, info: ImageInfo) -> Item:
    st = os.stat(info.path)
    extra: dict[str, object] = {"format": info.format, "source": str(info.path), "index": index}
    if info.backing_file:
        extra["backing_file"] = info.backing_file
    return Item(
        path=disk_path(index, info.path),
        kind=ItemKind.DISK,
        mode=st.st_mode & 0o7777,
        uid=st.st_uid,
        gid=st.st_gid,
        mtime_ns=st.st_mtime_ns,
        size=info.virtual_size,
        extra=extra,
    )


def _parent_mismatch(parent: Item, item: Item) -> str | None:
    if parent.kind != ItemKind.DISK:
        return "is not a disk"
    if parent.size != item.size:
        return f"had {parent.size} bytes, now {item.size} (resized)"
    if parent.extra.get("source") != item.extra["source"]:
        return f"came from {parent.extra.get('source')} (another image)"
    return None


def plan_disks(
    images: ImageSet, level: str, sink: BackupSink, warnings: list[str]
) -> list[DiskPlan]:
    """Probe every image and check the changed extents before anything is read."""
    infos = [probe_image(path, images.image_format) for path in images.images]
    changed_map: dict[str, list[Extent]] | None = None
    if level == BackupLevel.INCREMENTAL:
        if sink.parent is None:
            warnings.append("incremental asked but there is no previous recovery point: full read")
        elif images.changed_extents is None:
            warnings.append(
                "no changed_extents file: every allocated area was read (a full read, "
                "stored as a new full image)"
            )
        else:
            changed_map = load_changed_extents(images.changed_extents)
    plans = []
    for index, info in enumerate(infos):
        item = _disk_item(index, info)
        changed = changed_map.get(os.path.realpath(info.path)) if changed_map else None
        if changed is not None:
            assert images.changed_extents is not None
            changed = check_within(changed, info.virtual_size, info.path, images.changed_extents)
        parent = sink.parent.lookup(item.path) if changed_map is not None and sink.parent else None
        if changed_map is not None and parent is None:
            warnings.append(f"{info.path}: not in the previous recovery point: full read")
        elif parent is not None and (why := _parent_mismatch(parent, item)) is not None:
            warnings.append(f"{info.path}: the previous backup of this disk {why}: full read")
            parent = None
        elif parent is not None and changed is None:
            warnings.append(f"{info.path}: not listed in the changed extents file: full read")
            parent = None
        if parent is not None and changed is not None:
            plans.append(DiskPlan(info, item, INCREMENTAL, changed, parent))
        else:
            plans.append(DiskPlan(info, item, FULL, allocated_extents(info), None))
    return plans


def backup_images(
    images: ImageSet, request: BackupRequest, sink: BackupSink, ctx: PluginContext
) -> BackupResult:
    """Write one recovery point of ``images`` into ``sink`` (see docs/plugins/imagefile.md)."""
    result = BackupResult()
    plans = plan_disks(images, request.level, sink, result.warnings)
    # The engine's sink counts progress over every span of each disk (holes and
    # unchanged chunks included), so the total is the disks' virtual size.
    ctx.progress.set_total(
        bytes_total=sum(p.info.virtual_size for p in plans), items_total=len(plans)
    )
    disks = []
    for plan in plans:
        ctx.check_canceled()
        read_bytes = _store_disk(plan, sink, ctx, result.warnings)
        disks.append(
            {
                "path": plan.item.path.decode(errors="surrogateescape"),
                "source": str(plan.info.path),
                "format": plan.info.format,
                "virtual_size": plan.info.virtual_size,
                "mode": plan.mode,
                "bytes_read": read_bytes,
            }
        )
    for warning in result.warnings:
        ctx.logger.warning("%s", warning)
    result.metadata["disks"] = disks
    return result


def _store_disk(plan: DiskPlan, sink: BackupSink, ctx: PluginContext, warnings: list[str]) -> int:
    path = plan.info.path
    before = os.stat(path)
    done = 0
    with open_reader(plan.info) as reader:

        def read(offset: int, length: int) -> bytes:
            nonlocal done
            ctx.check_canceled()
            data = reader.read(offset, length)
            done += len(data)
            ctx.progress.advance(current=str(path))
            return data

        ctx.logger.info(
            "%s: %s backup of %s, %d bytes in %d extents",
            path,
            plan.mode,
            plan.item.path.decode(errors="replace"),
            sum(e.length for e in plan.extents),
            len(plan.extents),
        )
        sink.add_disk(plan.item, read, extents=plan.extents, parent=plan.parent)
    after = os.stat(path)
    if (after.st_mtime_ns, after.st_size) != (before.st_mtime_ns, before.st_size):
        warnings.append(
            f"{path} changed while it was read: this backup of it may be inconsistent "
            f"(back up a stopped machine or a snapshot)"
        )
    return done
