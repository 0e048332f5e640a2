"""Changed Block Tracking: turning it on, and asking which areas of a disk to read.

vSphere gives each disk of a snapshot a change id (``backing.changeId``) when
the VM tracks changes. ``QueryChangedDiskAreas`` then answers, for a disk of
that snapshot, which areas changed since an earlier change id, or, with the
id ``*``, which areas hold data at all. The answer may cover only part of the
disk (``startOffset`` and ``length``); the caller continues after it.

A change id from before tracking was reset (turned off, a storage move, a
crash of the host) is refused with a fault; :class:`ChangeIdRefused` carries
that refusal so that the backup falls back to a full read, and only that:
a lost connection is not a refusal and fails the run.
"""

from __future__ import annotations

from typing import Any

from pyVmomi import vim, vmodl

from tapir.appliance.plugin_api import Extent, PluginError

from . import snapshots

#: The change id that asks for every allocated area of a disk.
ALL_AREAS = "*"


class ChangeIdRefused(PluginError):
    """vSphere refused a change id (or the query); the disk must be read in full."""


def tracking_enabled(config: Any) -> bool:
    """Whether the VM's configuration (``vim.vm.ConfigInfo``) has CBT turned on."""
    return bool(getattr(config, "changeTrackingEnabled", False))


def enable_tracking(content: Any, vm: Any, vm_name: str) -> None:
    """Turn CBT on (``ReconfigVM_Task``); it takes effect with the next snapshot."""
    task = vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(changeTrackingEnabled=True))
    snapshots.wait(content, task, f"turning on Changed Block Tracking for VM {vm_name}")


def _fault_text(fault: vmodl.MethodFault) -> str:
    text = getattr(fault, "msg", None) or type(fault).__name__.rsplit(".", 1)[-1]
    prop = getattr(fault, "invalidProperty", None)
    return f"{' '.join(str(text).split())}{f' ({prop})' if prop else ''}"


def changed_areas(
    vm: Any, snapshot: Any, device_key: int, change_id: str, capacity: int
) -> list[Extent]:
    """The areas of a snapshot's disk changed since ``change_id`` (``*``: allocated areas).

    Raises :class:`ChangeIdRefused` when vSphere answers with a fault, and
    PluginError when an answer does not fit the disk; connection errors pass
    through unchanged.
    """
    areas: list[Extent] = []
    offset = 0
    while offset < capacity:
        try:
            info = vm.QueryChangedDiskAreas(
                snapshot=snapshot, deviceKey=device_key, startOffset=offset, changeId=change_id
            )
        except vmodl.MethodFault as fault:
            raise ChangeIdRefused(_fault_text(fault)) from None
        start, length = int(info.startOffset), int(info.length)
        if start != offset or length <= 0:
            raise PluginError(
                f"QueryChangedDiskAreas answered for {length} bytes at {start}, asked from {offset}"
            )
        end = min(start + length, capacity)
        for area in info.changedArea or ():
            a_start, a_len = int(area.start), int(area.length)
            if a_len <= 0:
                continue
            if a_start < start or a_start + a_len > end:
                raise PluginError(
                    f"QueryChangedDiskAreas reported {a_len} bytes at {a_start}, outside "
                    f"the {end - start} bytes at {start} it answered for"
                )
            areas.append(Extent(a_start, a_len))
        offset = end
    return areas
