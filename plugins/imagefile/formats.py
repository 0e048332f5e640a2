"""Recognising an image file's format and learning its virtual (guest-visible) size."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from tapir.appliance.plugin_api import PluginError

from .qemu import qemu_img_info

RAW = "raw"
QCOW2 = "qcow2"
FORMATS = (RAW, QCOW2)

# Magics of container formats this plugin does not read; recognising them turns a
# silent "backed up the container bytes as a raw disk" into a clear refusal.
_QCOW_MAGIC = b"QFI\xfb"
_FOREIGN = ((0, b"KDMV", "vmdk"), (0, b"vhdxfile", "vhdx"), (0x40, b"\x7f\x10\xda\xbe", "vdi"))


@dataclass(frozen=True)
class ImageInfo:
    """One image file as the plugin reads it."""

    path: Path  # absolute
    format: str  # RAW or QCOW2
    virtual_size: int  # bytes the guest sees
    backing_file: str | None = None


def open_image(path: Path) -> int:
    """Open an image read-only, turning every OS error into a :class:`PluginError`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise PluginError(f"cannot read disk image {path}: {exc.strerror}") from None
    mode = os.fstat(fd).st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISBLK(mode)):
        os.close(fd)
        raise PluginError(f"disk image {path} is neither a regular file nor a block device")
    return fd


def detect_format(head: bytes, path: Path) -> str:
    """RAW or QCOW2 from an image's first bytes; known foreign containers are refused."""
    if head.startswith(_QCOW_MAGIC):
        return QCOW2
    for offset, magic, name in _FOREIGN:
        if head[offset : offset + len(magic)] == magic:
            raise PluginError(
                f"disk image {path} looks like a {name} file, which imagefile does not read "
                f"(convert it with qemu-img, or set image_format=raw to copy its bytes as is)"
            )
    return RAW


def probe_image(path: Path, requested: str = "auto") -> ImageInfo:
    """Check that ``path`` is a readable image and return its format and virtual size.

    ``requested`` is "auto" (recognise qcow2 by its magic, anything else is raw) or
    a format name that overrides recognition (for a raw disk whose guest data happens
    to start with a qcow2 magic).
    """
    if requested not in ("auto", *FORMATS):
        raise PluginError(f"image_format must be auto, raw or qcow2, not {requested!r}")
    fd = open_image(path)
    try:
        try:
            head = os.pread(fd, 512, 0)
            size = os.lseek(fd, 0, os.SEEK_END)
        except OSError as exc:
            raise PluginError(f"cannot read disk image {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    fmt = detect_format(head, path) if requested == "auto" else requested
    if fmt == RAW:
        return ImageInfo(path, RAW, size)
    info = qemu_img_info(path, QCOW2)
    if info.get("encrypted"):
        raise PluginError(f"disk image {path} is encrypted; imagefile reads only plain qcow2")
    virtual = info.get("virtual-size")
    if not isinstance(virtual, int) or virtual < 0:
        raise PluginError(f"qemu-img reported no virtual size for {path}")
    backing = info.get("full-backing-filename") or info.get("backing-filename")
    return ImageInfo(path, QCOW2, virtual, str(backing) if backing else None)
