"""Test helpers for Changed Block Tracking against the vcsim fixture (see vcsim/cbt.go).

The fixture answers ``QueryChangedDiskAreas`` in blocks of :data:`CBT_BLOCK`
bytes, from copies of the flat extent it keeps at every snapshot; these helpers
compute the answers a test expects independently, change a disk's bytes the
way a running guest would, and read the fixture's count of bytes served.
"""

from __future__ import annotations

import json
import ssl
import urllib.request
from typing import Any

from pyVim.task import WaitForTask
from pyVmomi import vim
from vcsim_server import Vcsim

from .vm_disks import KiB, MiB

#: vcsim/cbt.go: cbtBlock and cbtWindow.
CBT_BLOCK = 64 * KiB
CBT_WINDOW = 8 * MiB
#: The engine's fixed disk chunk (appliance/datapath/chunker.py).


def served_bytes(vcsim: Vcsim, file_suffix: str = "-flat.vmdk") -> int:
    """Bytes vcsim served so far from datastore files ending in ``file_suffix``."""
    context = ssl.create_default_context(cafile=str(vcsim.cert_file))
    with urllib.request.urlopen(
        f"https://{vcsim.address}/tapir/served", context=context, timeout=10
    ) as response:
        served = json.load(response)
    return sum(int(n) for path, n in served.items() if path.endswith(file_suffix))


def allocated_bytes(data: bytes) -> int:
    """What a full backup reads: every fixture block holding a non-zero byte."""
    return sum(
        len(data[i : i + CBT_BLOCK])
        for i in range(0, len(data), CBT_BLOCK)
        if data[i : i + CBT_BLOCK].count(0) != len(data[i : i + CBT_BLOCK])
    )


def changed_blocks(before: bytes, after: bytes) -> list[int]:
    """Start offsets of the fixture blocks that differ."""
    return [
        i
        for i in range(0, len(after), CBT_BLOCK)
        if before[i : i + CBT_BLOCK] != after[i : i + CBT_BLOCK]
    ]


def overwrite(data: bytes, offset: int, new: bytes) -> bytes:
    """``data`` with ``new`` written at ``offset`` (what a guest's write does to the disk)."""
    return data[:offset] + new + data[offset + len(new) :]


def set_tracking(vm: Any, enabled: bool) -> None:
    """Turn the VM's Changed Block Tracking on or off, as an administrator would."""
    WaitForTask(vm.ReconfigVM_Task(vim.vm.ConfigSpec(changeTrackingEnabled=enabled)))
