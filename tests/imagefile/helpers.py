"""Test helpers for the imagefile plugin: the plugin API's MemorySink, extended to
record every add_disk call (the extents and parent handed over, the reads made),
and builders for real raw and qcow2 images."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tapir.appliance.plugin_api import (
    AssetInfo,
    BackupLevel,
    BackupRequest,
    DiskReadFn,
    Extent,
    Item,
)
from tapir.appliance.plugin_api.testing.memory_sink import MemorySink
from tapir.plugins.imagefile.role import ImageFilePlugin

MiB = 1024 * 1024


@dataclass
class DiskCall:
    """One add_disk call as the plugin made it."""

    item: Item
    extents: list[Extent] | None
    parent: Item | None
    reads: list[tuple[int, int]] = field(default_factory=list)


class RecordingSink(MemorySink):
    """A MemorySink that keeps each add_disk call, and checks the extents are in order."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[DiskCall] = []

    def add_disk(
        self,
        item: Item,
        read: DiskReadFn,
        extents: Iterable[Extent] | None = None,
        parent: Item | None = None,
    ) -> None:
        listed = list(extents) if extents is not None else None
        call = DiskCall(item, listed, parent)
        self.calls.append(call)
        previous_end = 0
        for ext in listed or []:
            assert previous_end <= ext.offset and ext.length > 0, f"{listed} not merged"
            assert ext.end <= item.size, f"extent {ext} outside the disk"
            previous_end = ext.end

        def recording_read(offset: int, length: int) -> bytes:
            call.reads.append((offset, length))
            return read(offset, length)

        super().add_disk(item, recording_read, listed, parent)


def request_for(plugin: ImageFilePlugin, level: str = BackupLevel.FULL, **options) -> BackupRequest:
    """A backup request for the image set ``options`` describe."""
    asset = plugin.image_set(None, options).asset()
    return BackupRequest(asset=asset, level=level, options=options)


def blank_asset() -> AssetInfo:
    return AssetInfo(kind="vm", name="x", external_id="")


def write_at(path: Path, offset: int, data: bytes) -> None:
    """Write ``data`` into an existing file without truncating it."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


def make_raw(path: Path, size: int) -> Path:
    """A sparse raw image with data (crossing chunk borders), a written zero run and holes.

    Areas that do not fit in a small ``size`` are left out; the size never grows.
    """
    with open(path, "wb") as f:
        f.truncate(size)
    areas = [
        (0, os.urandom(300 * 1024)),  # a boot area
        (3 * MiB + 12345, os.urandom(2 * MiB)),  # crosses the 4 MiB border
        (9 * MiB, bytes(3 * MiB)),  # zeros written out: allocated, yet zero
        (13 * MiB, b"tapir" * 1000),
        (size - 4096, os.urandom(4096)),  # the very end
    ]
    for offset, data in areas:
        if offset >= 0 and offset + len(data) <= size:
            write_at(path, offset, data)
    assert os.stat(path).st_size == size
    return path


def qemu_img(*args: str) -> str:
    proc = subprocess.run(["qemu-img", *args], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def make_qcow2(path: Path, raw: Path) -> Path:
    qemu_img("convert", "-f", "raw", "-O", "qcow2", str(raw), str(path))
    return path


def allocated_bytes(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def qemu_nbd_children() -> list[int]:
    """Live qemu-nbd processes started by this test process."""
    me = str(os.getpid())
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if fields[1] == me and comm == "qemu-nbd" and fields[0] != "Z":
            found.append(int(pid))
    return found
