"""Push mode: QEMU writes each disk's backup into a qcow2 file Tapir then reads.

A full backup's file holds the disk's data; an incremental's holds only the
clusters changed since the checkpoint, and libvirt records the live disk as its
backing file. Tapir opens the file with its backing cut off (``"backing": null``)
so only the file's own clusters count: those ``present`` in it are the changed
areas (zeroed ones included), and nothing of the live disk is ever read.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

from tapir.appliance.plugin_api import Extent, PluginError

from .nbd_client import NbdExport, merge


def image_spec(path: Path) -> str:
    """A qemu ``json:`` file name opening the qcow2 ``path`` without its backing file."""
    spec = {"driver": "qcow2", "backing": None, "file": {"driver": "file", "filename": str(path)}}
    return "json:" + json.dumps(spec)


def changed_extents(path: Path, incremental: bool) -> tuple[int, list[Extent]]:
    """The virtual size and the areas to store: clusters present in the file (incremental)
    or holding data (full)."""
    if shutil.which("qemu-img") is None:
        raise PluginError("push mode needs qemu-img (Debian package qemu-utils)")
    spec = image_spec(path)
    info = _qemu_img(["info", "--output=json", spec], path)
    entries = _qemu_img(["map", "--output=json", spec], path)
    if not isinstance(info, dict) or not isinstance(entries, list):
        raise PluginError(f"qemu-img gave an unexpected answer about {path}")
    size = int(info["virtual-size"])
    found = []
    for entry in entries:
        start, length = int(entry["start"]), int(entry["length"])
        keep = entry.get("present", entry.get("data")) if incremental else not entry["zero"]
        if keep:
            found.append(Extent(start, min(length, size - start)))
    return size, merge(found)


#: How long QEMU may keep its lock on a pushed file after libvirt reports the job done.
LOCK_RELEASE_WAIT = 15.0


def _qemu_img(args: list[str], path: Path) -> object:
    # libvirt reports the backup job finished a moment before QEMU closes the target
    # file; until then its image lock refuses even a read-only open.
    deadline = time.monotonic() + LOCK_RELEASE_WAIT
    while True:
        result = subprocess.run(["qemu-img", *args], capture_output=True, text=True, check=False)
        if result.returncode == 0:
            return json.loads(result.stdout)
        if "Failed to get shared" not in result.stderr or time.monotonic() > deadline:
            raise PluginError(
                f"qemu-img {args[0]} of the push backup {path} failed: {result.stderr}"
            )
        time.sleep(0.1)


def open_copy(path: Path) -> NbdExport:
    """Read access to the pushed file (a private, read-only qemu-nbd)."""
    qemu_nbd = shutil.which("qemu-nbd")
    if qemu_nbd is None:
        raise PluginError("push mode needs qemu-nbd (Debian package qemu-utils)")
    return NbdExport("", [], command=[qemu_nbd, "--read-only", image_spec(path)])
