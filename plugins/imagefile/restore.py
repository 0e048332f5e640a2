"""Restoring disk items to image files: sparse raw, or qcow2 converted from it.

Each disk is written to a temporary file beside its destination and renamed into
place only once complete and verified, so a failed or canceled restore never
leaves a half-written image under the final name, nor harms an existing one.
"""

from __future__ import annotations

import functools
import os
import re
import tempfile
from pathlib import Path

from tapir.appliance.plugin_api import (
    Item,
    ItemKind,
    PluginContext,
    PluginError,
    RestoreRequest,
    RestoreResult,
    RestoreSource,
)

from .formats import FORMATS, QCOW2, RAW
from .qemu import convert_raw_to_qcow2, qemu_img_binary, qemu_img_info, run_qemu_img

#: Read size when an item carries no chunk list to follow.
BLOCK = 4 * 1024 * 1024
#: Zero runs this long (and aligned) inside a chunk stay holes in the restored file;
#: the size of a qcow2 cluster, so a converted image stays as small as its source.
SPARSE_BLOCK = 64 * 1024

_STORED_NAME = re.compile(rb"^disks/(\d+)-(.+)$")


@functools.lru_cache(maxsize=8)
def _zeros(length: int) -> bytes:
    return bytes(length)


def basename(item: Item) -> str:
    """The image's file name: the part of ``disks/<n>-<name>`` after the index."""
    match = _STORED_NAME.match(item.path)
    raw = match.group(2) if match else item.path.rsplit(b"/", 1)[-1]
    name = os.fsdecode(raw)
    if name in ("", ".", "..") or "/" in name:
        raise PluginError(f"disk item {item.path!r} has no usable file name")
    return name


def destinations(items: list[Item], request: RestoreRequest, warnings: list[str]) -> list[Path]:
    """Where each disk goes: ``target/<basename>``, or its source path without a target."""
    if request.target is None:
        dests = []
        for item in items:
            source = item.extra.get("source")
            if not isinstance(source, str) or not os.path.isabs(source):
                raise PluginError(f"{item.path!r} records no original path; give a target folder")
            dests.append(Path(source))
        return dests
    names = [basename(item) for item in items]
    dests = []
    for item, name in zip(items, names, strict=True):
        if names.count(name) > 1:
            # Two images with one file name (from different folders) must not
            # overwrite each other: keep the stored, index-prefixed name.
            stored = os.fsdecode(item.path.rsplit(b"/", 1)[-1])
            warnings.append(f"several disks are named {name}; {item.path!r} restored as {stored}")
            name = stored
        dests.append(request.target / name)
    return dests


def _check_destinations(dests: list[Path], overwrite: str) -> None:
    if len(set(dests)) != len(dests):
        raise PluginError(f"several disks would be restored to the same file: {dests}")
    existing = [d for d in dests if d.exists() or d.is_symlink()]
    for dest in existing:
        if dest.is_dir():
            raise PluginError(f"cannot restore a disk to {dest}: it is a directory")
    if existing and overwrite != "always":
        raise PluginError(
            f"refusing to overwrite existing file(s) {[str(d) for d in existing]}; "
            f"restore elsewhere or set overwrite to 'always'"
        )


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def data_runs(data: bytes, block: int = SPARSE_BLOCK) -> list[tuple[int, int]]:
    """(start, end) of the runs of ``data`` that hold non-zero bytes, ``block`` aligned."""
    if data == _zeros(len(data)):
        return []
    runs: list[tuple[int, int]] = []
    view = memoryview(data)
    zero = _zeros(block)
    for start in range(0, len(data), block):
        piece = view[start : start + block]
        if piece == zero[: len(piece)]:
            continue
        end = start + len(piece)
        if runs and runs[-1][1] == start:
            runs[-1] = (runs[-1][0], end)
        else:
            runs.append((start, end))
    return runs


def _pieces(item: Item) -> list[tuple[int, int, bool]]:
    """(offset, length, is_hole) for the whole disk, following its chunk list if whole."""
    if item.chunks and item.stored_size == item.size:
        return [(off, ref.length, ref.id is None) for off, ref in item.chunk_offsets()]
    return [(off, min(BLOCK, item.size - off), False) for off in range(0, item.size, BLOCK)]


def write_sparse_raw(item: Item, fd: int, source: RestoreSource, ctx: PluginContext) -> int:
    """Write ``item``'s data to ``fd``, leaving holes and zero areas unwritten.

    Returns the number of data bytes written.
    """
    disk = source.open_disk(item)
    if disk.size != item.size:
        raise PluginError(
            f"{item.path!r}: stored disk has {disk.size} bytes, the item says {item.size}"
        )
    written = 0
    for offset, length, hole in _pieces(item):
        ctx.check_canceled()
        if not hole:
            data = disk.pread(offset, length)
            if len(data) != length:
                raise PluginError(
                    f"{item.path!r}: read {len(data)} of {length} bytes at offset {offset}"
                )
            for start, end in data_runs(data):
                _pwrite_all(fd, data[start:end], offset + start)
                written += end - start
        ctx.progress.advance(bytes_done=length, current=item.path.decode(errors="replace"))
    os.ftruncate(fd, item.size)
    os.fsync(fd)
    size = os.fstat(fd).st_size
    if size != item.size:
        raise PluginError(f"{item.path!r}: restored file has {size} bytes, expected {item.size}")
    return written


def _temp_beside(dest: Path, suffix: str) -> Path:
    fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=suffix)
    os.close(fd)
    return Path(name)


def _restore_one(
    item: Item, dest: Path, fmt: str, source: RestoreSource, ctx: PluginContext
) -> None:
    temps: list[Path] = []
    try:
        raw = _temp_beside(dest, ".tapir-partial")
        temps.append(raw)
        fd = os.open(raw, os.O_WRONLY | os.O_CLOEXEC)
        try:
            write_sparse_raw(item, fd, source, ctx)
        finally:
            os.close(fd)
        final = raw
        if fmt == QCOW2:
            final = _temp_beside(dest, ".qcow2.tapir-partial")
            temps.append(final)
            convert_raw_to_qcow2(raw, final)
            _verify_qcow2(raw, final, item)
        os.chmod(final, (item.mode & 0o7777) or 0o600)
        os.replace(final, dest)
        temps.remove(final)
        dir_fd = os.open(dest.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise PluginError(f"restoring {item.path!r} to {dest} failed: {exc}") from None
    finally:
        for temp in temps:
            temp.unlink(missing_ok=True)


def _verify_qcow2(raw: Path, qcow2: Path, item: Item) -> None:
    size = qemu_img_info(qcow2, QCOW2).get("virtual-size")
    if size != item.size:
        raise PluginError(f"{item.path!r}: converted qcow2 has {size} bytes, expected {item.size}")
    run_qemu_img(
        ["compare", "-q", "-f", "raw", "-F", "qcow2", str(raw), str(qcow2)],
        f"verifying the qcow2 restore of {item.path!r}",
    )


def restore_disks(
    request: RestoreRequest, source: RestoreSource, ctx: PluginContext
) -> RestoreResult:
    """Restore the disks of a recovery point as image files (see docs/plugins/imagefile.md)."""
    result = RestoreResult()
    requested = request.options.get("format")
    if requested is not None and requested not in FORMATS:
        raise PluginError(f"restore option format must be raw or qcow2, not {requested!r}")
    items = []
    for item in source.items(request.paths):
        if item.kind == ItemKind.DISK:
            items.append(item)
        else:
            result.skipped.append(item.path.decode(errors="replace"))
    if not items:
        raise PluginError("nothing to restore: no disk in the recovery point matches")
    # Back to the original place, a disk keeps its format unless told otherwise.
    formats = [
        str(requested or (item.extra.get("format", RAW) if request.target is None else RAW))
        for item in items
    ]
    if any(f not in FORMATS for f in formats):
        raise PluginError(f"unknown disk format in the recovery point: {formats}")
    if QCOW2 in formats:
        qemu_img_binary()
    dests = destinations(items, request, result.warnings)
    _check_destinations(dests, request.overwrite)
    if request.target is not None:
        try:
            request.target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PluginError(f"cannot create restore folder {request.target}: {exc}") from None
    ctx.progress.set_total(bytes_total=sum(i.size for i in items), items_total=len(items))
    for item, dest, item_fmt in zip(items, dests, formats, strict=True):
        ctx.logger.info("restoring %r to %s as %s", item.path, dest, item_fmt)
        _restore_one(item, dest, item_fmt, source, ctx)
        result.items_restored += 1
        result.bytes_restored += item.size
        ctx.progress.advance(items_done=1)
    return result
