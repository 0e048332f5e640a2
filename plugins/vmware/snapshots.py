"""The snapshots Tapir takes for a backup: creation, removal, and orphans of killed runs.

Every snapshot Tapir creates is named ``tapir-<time>`` and carries
:data:`DESCRIPTION` as its description, so that one left behind by a run that
was killed (power loss, OOM, a lost vCenter) is recognised at the next run and
removed. Both marks must match: an administrator's own snapshot called
``tapir-before-upgrade`` is never touched.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pyVmomi import vim, vmodl

from tapir.appliance.plugin_api import PluginError

PREFIX = "tapir-"
DESCRIPTION = "Taken by Tapir for a backup; Tapir removes it when the backup ends."
TASK_TIMEOUT = 3600.0


@dataclass(frozen=True)
class SnapshotInfo:
    """One snapshot of a VM's snapshot tree."""

    name: str
    description: str
    snapshot: Any  # vim.vm.Snapshot
    created: datetime | None

    @property
    def taken_by_tapir(self) -> bool:
        """Both the name prefix and the description are Tapir's."""
        return self.name.startswith(PREFIX) and self.description.strip() == DESCRIPTION


def vm_properties(content: Any, obj: Any, paths: Iterable[str]) -> dict[str, Any]:
    """Properties of one managed object in one call; unset ones are simply absent.

    Reading ``vm.snapshot`` attribute by attribute fails on a VM without
    snapshots on some servers (vcsim panics); the property collector leaves it out.
    """
    query = vmodl.query.PropertyCollector
    spec = query.FilterSpec(
        objectSet=[query.ObjectSpec(obj=obj, skip=False)],
        propSet=[query.PropertySpec(type=type(obj), pathSet=list(paths))],
    )
    result = content.propertyCollector.RetrievePropertiesEx([spec], query.RetrieveOptions())
    out: dict[str, Any] = {}
    for oc in (result.objects if result else None) or []:
        out.update({p.name: p.val for p in oc.propSet or []})
    return out


def walk(tree: Iterable[Any] | None) -> Iterator[SnapshotInfo]:
    """Every snapshot of a ``snapshot.rootSnapshotList``, depth first."""
    for node in tree or ():
        yield SnapshotInfo(
            name=str(node.name),
            description=str(node.description or ""),
            snapshot=node.snapshot,
            created=node.createTime,
        )
        yield from walk(node.childSnapshotList)


def snapshots_of(content: Any, vm: Any) -> list[SnapshotInfo]:
    """The VM's whole snapshot tree."""
    info = vm_properties(content, vm, ["snapshot"]).get("snapshot")
    return list(walk(info.rootSnapshotList if info is not None else None))


def wait(content: Any, task: Any, what: str, timeout: float = TASK_TIMEOUT) -> Any:
    """Wait for a vSphere task; its result, or PluginError naming ``what`` and the fault."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        # Only these fields: a whole TaskInfo of RemoveSnapshot_Task names a Snapshot as
        # its entity, which some servers (vcsim) send and pyvmomi refuses to decode.
        info = vm_properties(content, task, ["info.state", "info.error", "info.result"])
        state = info.get("info.state")
        if state == vim.TaskInfo.State.success:
            return info.get("info.result")
        if state == vim.TaskInfo.State.error:
            fault = info.get("info.error")
            msg = getattr(fault, "msg", None) or type(fault).__name__
            raise PluginError(f"{what} failed: {' '.join(str(msg).split())}")
        if time.monotonic() > deadline:
            raise PluginError(f"{what} did not finish within {timeout:.0f} s")
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


def new_name(now: datetime | None = None) -> str:
    """``tapir-20260125T031500Z``: the prefix and the creation time."""
    return PREFIX + (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


def create(content: Any, vm: Any, vm_name: str, quiesce: bool) -> Any:
    """Take a snapshot without the VM's memory; returns the ``vim.vm.Snapshot``."""
    task = vm.CreateSnapshot_Task(
        name=new_name(), description=DESCRIPTION, memory=False, quiesce=quiesce
    )
    kind = "quiesced snapshot" if quiesce else "snapshot"
    return wait(content, task, f"taking a {kind} of VM {vm_name}")


def remove(content: Any, snapshot: Any, label: str) -> None:
    """Delete one snapshot (its changes merge into the disks; children stay)."""
    task = snapshot.RemoveSnapshot_Task(removeChildren=False)
    wait(content, task, f"removing snapshot {label}")


def remove_orphans(content: Any, vm: Any, vm_name: str) -> list[str]:
    """Remove the snapshots earlier Tapir runs left on ``vm``; returns their names."""
    removed = []
    for snap in snapshots_of(content, vm):
        if snap.taken_by_tapir:
            remove(content, snap.snapshot, f"{snap.name} of VM {vm_name} (left by an earlier run)")
            removed.append(snap.name)
    return removed
