"""What browsing shows: disks, volumes and file system entries, as plain data.

``to_json`` gives the documented shape of the JSON API (docs/user-guide/file-restore.md).
"""

from __future__ import annotations

import stat
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

FILE, DIRECTORY, SYMLINK, OTHER = "file", "dir", "symlink", "other"


@dataclass(frozen=True)
class DiskInfo:
    """One disk item of a recovery point."""

    index: int  # its position among the point's disks, as DISK in an address
    name: str  # the last part of its item path
    item_path: str
    size: int
    table: str | None  # "gpt", "mbr"..., None without a partition table

    def to_json(self) -> dict[str, Any]:
        """The disk as a JSON object."""
        return asdict(self)


@dataclass(frozen=True)
class VolumeInfo:
    """A partition, an LVM logical volume, or a whole disk holding a file system."""

    name: str  # as VOLUME in an address: "1", "vg-lv", "0" (the whole disk)
    kind: str  # "partition", "lvm" or "disk"
    offset: int | None  # on the disk (None for an LVM volume)
    size: int
    type: str  # the partition type as the table gives it
    label: str | None
    fs: str | None  # "ext", "xfs", "ntfs", "fat", "btrfs"...; None when none is readable
    error: str | None = None  # why no file system could be opened

    def to_json(self) -> dict[str, Any]:
        """The volume as a JSON object."""
        return asdict(self)


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Entry:
    """A file, folder, symbolic link or special file inside a file system."""

    name: str
    path: str  # absolute inside its file system
    kind: str  # "file", "dir", "symlink" or "other"
    size: int
    mode: int  # st_mode: type and permission bits
    uid: int
    gid: int
    mtime: float
    atime: float | None
    ctime: float | None
    target: str | None = None  # a symbolic link's target

    @property
    def is_dir(self) -> bool:
        """True for a folder."""
        return self.kind == DIRECTORY

    def permissions(self) -> str:
        """``ls -l`` style mode, e.g. ``drwxr-xr-x``."""
        return stat.filemode(self.mode)

    def to_json(self) -> dict[str, Any]:
        """The entry as a JSON object (times as ISO 8601 UTC)."""
        return {
            "name": self.name,
            "path": self.path,
            "kind": self.kind,
            "size": self.size,
            "mode": f"{stat.S_IMODE(self.mode):04o}",
            "permissions": self.permissions(),
            "uid": self.uid,
            "gid": self.gid,
            "mtime": _iso(self.mtime),
            "atime": _iso(self.atime),
            "ctime": _iso(self.ctime),
            "target": self.target,
        }


def kind_of(mode: int) -> str:
    """The entry kind of an ``st_mode``."""
    if stat.S_ISDIR(mode):
        return DIRECTORY
    if stat.S_ISREG(mode):
        return FILE
    if stat.S_ISLNK(mode):
        return SYMLINK
    return OTHER
