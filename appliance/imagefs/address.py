"""Addresses of files inside a point's disks: ``DISK:VOLUME/PATH``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Address:
    """A disk (or none: the point), a volume on it (or none) and a path in its file system."""

    disk: str | None = None
    volume: str | None = None
    path: str = "/"

    def __str__(self) -> str:
        if self.disk is None:
            return ""
        if self.volume is None:
            return self.disk
        return f"{self.disk}:{self.volume}{self.path}"

    def child(self, name: str) -> Address:
        """The address of ``name`` inside this folder."""
        return Address(self.disk, self.volume, self.path.rstrip("/") + "/" + name)


def normalize_path(path: str) -> str:
    """An absolute path without empty, '.' or '..' parts ('..' never climbs above '/')."""
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/" + "/".join(parts)


def parse_address(text: str | None) -> Address:
    """Parse ``DISK``, ``DISK:VOLUME`` or ``DISK:VOLUME/PATH`` (empty: the point itself).

    DISK is a disk's number (0, 1...), its name or its item path; VOLUME a partition
    number, an LVM volume ``vg-lv``, or ``0`` for a disk without partition table.
    """
    text = (text or "").strip()
    if not text:
        return Address()
    disk, sep, rest = text.partition(":")
    if not disk:
        raise ValueError(f"address {text!r} has no disk (write DISK:VOLUME/PATH)")
    if not sep or not rest:
        return Address(disk)
    volume, slash, path = rest.partition("/")
    if not volume:
        raise ValueError(f"address {text!r} has no volume (write DISK:VOLUME/PATH)")
    return Address(disk, volume, normalize_path(slash + path))
