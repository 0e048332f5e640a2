"""Which areas of an image hold data, and which changed since the previous backup."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterable
from pathlib import Path

from tapir.appliance.plugin_api import Extent, PluginError

from .qemu import qemu_img_json


def merge_extents(extents: Iterable[Extent]) -> list[Extent]:
    """Sorted, non-overlapping extents covering the same bytes; empty ones dropped."""
    merged: list[Extent] = []
    for ext in sorted((e for e in extents if e.length > 0), key=lambda e: (e.offset, e.length)):
        if merged and ext.offset <= merged[-1].end:
            last = merged[-1]
            merged[-1] = Extent(last.offset, max(last.end, ext.end) - last.offset)
        else:
            merged.append(ext)
    return merged


def raw_allocated_extents(fd: int, size: int) -> list[Extent]:
    """Data areas of a raw image from SEEK_DATA / SEEK_HOLE.

    A file system (or block device) that cannot tell holes from data reports the
    whole image as data: reading zeros costs time, never correctness.
    """
    found: list[Extent] = []
    pos = 0
    try:
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # no data after pos
                    break
                raise
            if start >= size:
                break
            end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
            found.append(Extent(start, end - start))
            pos = end
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            return [Extent(0, size)] if size else []
        raise
    return merge_extents(found)


def qcow2_allocated_extents(path: Path, size: int) -> list[Extent]:
    """Areas of a qcow2 image (and its backing chain) that hold data, from ``qemu-img map``.

    Only the areas qemu reports as reading zeros (unallocated, zero clusters) are
    left out: a full backup stores everything outside these extents as a hole, so
    an area of unknown state ("data": false, "zero": false) must be read.
    """
    entries = qemu_img_json(["map", "-f", "qcow2", str(path)], f"mapping {path}")
    if not isinstance(entries, list):
        raise PluginError(f"mapping {path}: unexpected qemu-img answer")
    found: list[Extent] = []
    for entry in entries:
        try:
            start, length = int(entry["start"]), int(entry["length"])
            zero = bool(entry["zero"])
        except (KeyError, TypeError, ValueError):
            raise PluginError(f"mapping {path}: unexpected qemu-img entry {entry!r}") from None
        if not zero:
            found.append(Extent(start, length))
    return clip_to(merge_extents(found), size)


def clip_to(extents: list[Extent], size: int) -> list[Extent]:
    """Cut sorted extents at ``size`` (qemu may map up to a cluster boundary)."""
    clipped = []
    for ext in extents:
        if ext.offset >= size:
            break
        clipped.append(Extent(ext.offset, min(ext.end, size) - ext.offset))
    return clipped


def load_changed_extents(path: Path) -> dict[str, list[Extent]]:
    """Read a changed-extents file: ``{"<image path>": [[offset, length], ...], ...}``.

    Keys are resolved to real paths so that they match however the job names the
    image. Every entry is checked here; bounds are checked per disk by
    :func:`check_within`.
    """
    try:
        raw = json.loads(Path(path).read_text())
    except OSError as exc:
        raise PluginError(f"cannot read changed extents file {path}: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PluginError(f"changed extents file {path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise PluginError(f"changed extents file {path} must hold an object keyed by image path")
    changed: dict[str, list[Extent]] = {}
    for image, pairs in raw.items():
        if not isinstance(pairs, list):
            raise PluginError(f"changed extents file {path}: {image!r} must map to a list")
        extents = []
        for pair in pairs:
            if (
                not isinstance(pair, list)
                or len(pair) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair)
                or pair[0] < 0
                or pair[1] < 0
            ):
                raise PluginError(
                    f"changed extents file {path}: {image!r} has {pair!r}, "
                    f"expected [offset, length] with non-negative integers"
                )
            extents.append(Extent(pair[0], pair[1]))
        changed[os.path.realpath(image)] = extents
    return changed


def check_within(extents: list[Extent], size: int, image: Path, source: Path) -> list[Extent]:
    """Refuse a changed extent that leaves the disk; return the extents merged."""
    for ext in extents:
        if ext.end > size:
            raise PluginError(
                f"changed extents file {source}: extent [{ext.offset}, {ext.length}] of "
                f"{image} ends at byte {ext.end}, past the end of the disk ({size} bytes); "
                f"the file does not describe this disk"
            )
    return merge_extents(extents)
