"""Finding the volumes on a disk: a file system on the whole disk, a partition table
(MBR, GPT), and LVM2 logical volumes on its partitions; then their file systems."""

from __future__ import annotations

import functools
import importlib
import logging
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from dissect.target import volume as dt_volume
from dissect.util.stream import RangeStream
from dissect.volume.disk import Disk

from .errors import reading
from .model import VolumeInfo

log = logging.getLogger(__name__)
# Probing tries every known file system on every volume; each miss is logged as a
# warning by the library, which would bury an operator's terminal in noise.
logging.getLogger("dissect.target").setLevel(logging.ERROR)

#: MBR types that only contain other partitions.
_EXTENDED = {0x05, 0x0F, 0x85}
FS_NAMES = "ext2/3/4, XFS, NTFS, FAT, exFAT, btrfs"


@dataclass
class OpenVolume:
    """A volume found on a disk, its data, and its file system once opened."""

    info: VolumeInfo
    fh: BinaryIO = field(repr=False)
    fs: Any = field(default=None, repr=False)  # a dissect.target Filesystem


#: The file systems probed, in order: (module of dissect.target.filesystems, class).
#: Only these: probing every format the library knows would import dozens of
#: parsers (forensic archives, databases) on each first open.
FILESYSTEMS = (
    ("extfs", "ExtFilesystem"),
    ("xfs", "XfsFilesystem"),
    ("ntfs", "NtfsFilesystem"),
    ("fat", "FatFilesystem"),
    ("exfat", "ExfatFilesystem"),
    ("btrfs", "BtrfsFilesystem"),
)


@functools.cache
def _filesystem_class(module: str, name: str) -> Any:
    try:
        return getattr(importlib.import_module(f"dissect.target.filesystems.{module}"), name)
    except ImportError as exc:  # its parser package is not installed
        log.info("file system %s not available: %s", module, exc)
        return None


def open_filesystem(fh: BinaryIO) -> tuple[Any, str | None]:
    """``(filesystem, None)``, or ``(None, reason)`` when no readable one is there."""
    for module, name in FILESYSTEMS:
        cls = _filesystem_class(module, name)
        if cls is None or not cls.detect(fh):
            continue
        try:
            fh.seek(0)
            return cls(fh), None
        except Exception as exc:  # recognised, yet its structures do not parse
            detail = f"{type(exc).__name__}: {exc}"
            return None, f"the {cls.__type__} file system cannot be opened ({detail})"
    return None, f"no file system Tapir can read ({FS_NAMES}) was recognised"


def _table_name(disk: Disk) -> str:
    return type(disk.scheme).__name__.lower()


def _partitions(stream: BinaryIO) -> tuple[str | None, list[tuple[VolumeInfo, BinaryIO]]]:
    try:
        stream.seek(0)
        disk = Disk(stream)
    except Exception:  # no table this library knows
        return None, []
    found = []
    for part in disk.partitions:
        if isinstance(part.type, int) and part.type in _EXTENDED:
            continue
        size = part.size
        raw = part.raw
        if raw is not None and hasattr(raw, "last_lba"):
            # GPT's last LBA is inclusive; the library counts one sector short.
            size = (raw.last_lba - raw.first_lba + 1) * disk.sector_size
        size = max(0, min(size, stream.size - part.offset))
        info = VolumeInfo(
            name=str(part.number),
            kind="partition",
            offset=part.offset,
            size=size,
            type=part.type_str,
            label=part.name or None,
            fs=None,
        )
        found.append((info, RangeStream(stream, part.offset, size)))
    return _table_name(disk), found


def _lvm_volumes(candidates: list[BinaryIO], where: str) -> list[tuple[VolumeInfo, BinaryIO]]:
    physical = [fh for fh in candidates if dt_volume.is_lvm_volume(fh)]
    if not physical:
        return []
    found = []
    with reading(f"{where}: LVM"):
        for system in dt_volume.open_lvm(physical):
            for vol in system.volumes:
                info = VolumeInfo(
                    name=vol.name,
                    kind="lvm",
                    offset=None,
                    size=vol.size,
                    type="LVM2 logical volume",
                    label=vol.name,
                    fs=None,
                )
                found.append((info, vol))
    return found


def discover(stream: Any, where: str) -> tuple[str | None, list[OpenVolume]]:
    """The partition table's name and the volumes of the disk ``stream``, file systems opened."""
    whole_fs, _ = open_filesystem(stream)
    if whole_fs is not None:
        info = VolumeInfo("0", "disk", 0, stream.size, "whole disk", None, whole_fs.__type__)
        return None, [OpenVolume(info, stream, whole_fs)]
    table, parts = _partitions(stream)
    if table is None:
        parts = [(VolumeInfo("0", "disk", 0, stream.size, "whole disk", None, None), stream)]
    parts += _lvm_volumes([fh for _, fh in parts], where)
    volumes = []
    for info, fh in parts:
        fs, reason = open_filesystem(fh)
        if fs is not None:
            info = VolumeInfo(**{**info.to_json(), "fs": fs.__type__})
        elif dt_volume.is_lvm_volume(fh):
            reason = "an LVM2 physical volume (its logical volumes are listed by name)"
        volumes.append(OpenVolume(VolumeInfo(**{**info.to_json(), "error": reason}), fh, fs))
    return table, volumes
