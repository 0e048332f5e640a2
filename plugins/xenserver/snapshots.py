"""The snapshots Tapir takes of a VM: creation, removal, and what killed runs left behind.

A backup snapshot is named ``tapir-<UTC time>`` and carries :data:`DESCRIPTION`;
its VDIs carry :data:`VDI_DESCRIPTION`. Both marks must match before Tapir
removes anything, so an administrator's ``tapir-before-upgrade`` stays. Removing
a snapshot destroys the snapshot VM (and its VBDs), then its VDIs: XAPI's
``VM.destroy`` leaves a snapshot's VDIs in the SR.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import XenAPI

from .connection import failure_code, failure_text

PREFIX = "tapir-"
DESCRIPTION = "Taken by Tapir for a backup; Tapir removes it when the backup ends."
VDI_DESCRIPTION = "Tapir backup snapshot (changed block tracking reference once data-destroyed)."
CBT_METADATA = "cbt_metadata"


def new_name(now: datetime | None = None) -> str:
    """``tapir-20260125T031500Z``: the prefix and the creation time."""
    return PREFIX + (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


def taken_by_tapir(record: dict[str, Any]) -> bool:
    """Both the name prefix and the description are Tapir's."""
    return str(record.get("name_label", "")).startswith(PREFIX) and (
        str(record.get("name_description", "")).strip() == DESCRIPTION
    )


def create(api: Any, vm: str, quiesce: bool) -> str:
    """Snapshot ``vm`` (disks only, no memory), marked as Tapir's; returns the snapshot VM."""
    name = new_name()
    snap = api.VM.snapshot_with_quiesce(vm, name) if quiesce else api.VM.snapshot(vm, name)
    api.VM.set_name_description(snap, DESCRIPTION)
    for vdi in snapshot_vdis(api, snap):
        api.VDI.set_name_description(vdi, VDI_DESCRIPTION)
    return str(snap)


def snapshot_vdis(api: Any, snap: str) -> list[str]:
    """The VDIs behind the snapshot's disk VBDs."""
    out = []
    for vbd in api.VM.get_VBDs(snap):
        rec = api.VBD.get_record(vbd)
        if rec.get("type") == "Disk" and not rec.get("empty") and rec["VDI"] != "OpaqueRef:NULL":
            out.append(str(rec["VDI"]))
    return out


def remove(api: Any, snap: str, keep: Callable[[str], bool] = lambda vdi: False) -> list[str]:
    """Destroy the snapshot VM, then every VDI of it for which ``keep(vdi)`` is false.

    Returns what could not be removed (messages); the rest is gone.
    """
    problems = []
    vdis = snapshot_vdis(api, snap)
    try:
        api.VM.destroy(snap)
    except XenAPI.Failure as exc:
        problems.append(f"VM.destroy of the snapshot failed: {failure_text(exc)}")
    for vdi in vdis:
        if keep(vdi):
            continue
        try:
            api.VDI.destroy(vdi)
        except XenAPI.Failure as exc:
            if failure_code(exc) != "HANDLE_INVALID":
                problems.append(f"VDI.destroy of {vdi} failed: {failure_text(exc)}")
    return problems


def remove_orphans(api: Any, vm: str) -> list[str]:
    """Remove snapshots (and full snapshot VDIs) earlier runs left on ``vm``; their names."""
    removed = []
    for snap in api.VM.get_snapshots(vm):
        rec = api.VM.get_record(snap)
        if taken_by_tapir(rec):
            remove(api, snap)
            removed.append(str(rec["name_label"]))
    # A run killed between VM.destroy and VDI.data_destroy leaves full snapshot VDIs.
    for vbd in api.VM.get_VBDs(vm):
        vdi = api.VBD.get_VDI(vbd)
        if vdi == "OpaqueRef:NULL":
            continue
        for snap_vdi in api.VDI.get_snapshots(vdi):
            rec = api.VDI.get_record(snap_vdi)
            if (
                rec.get("name_description") == VDI_DESCRIPTION
                and rec.get("type") != CBT_METADATA
                and not rec.get("VBDs")
            ):
                api.VDI.destroy(snap_vdi)
                removed.append(f"VDI {rec['uuid']}")
    return removed
