"""Incremental VMware backups through Changed Block Tracking, against vcsim and its CBT
extension (vcsim/cbt.go): CBT turned on, full reads of allocated areas only, incrementals
reading only what changed, a reset change id falling back to a full, and failures leaving
no point and no snapshot."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from pyVim.task import WaitForTask
from pyVmomi import vim, vmodl
from vcsim_server import Vcsim

from tapir.appliance.engine.service import Appliance
from tapir.plugins.vmware import changes
from tapir.plugins.vmware.datastore import DatastoreFiles, DatastorePath

from .cbt_helpers import (
    CBT_BLOCK,
    CBT_WINDOW,
    allocated_bytes,
    changed_blocks,
    overwrite,
    served_bytes,
    set_tracking,
)
from .test_backup import SIZE, VM, app, make_job, read_back  # noqa: F401 (app: a fixture)
from .vm_disks import MiB, VmDisk, disk_bytes, find_vm, prepare_disk, snapshot_names

CHANGE_ID = re.compile(r"^([0-9a-f]{2} ){15}[0-9a-f]{2}/\d+$")


def tracking(vm: Any) -> bool:
    return bool(vm.config.changeTrackingEnabled)


def guest_writes(disk: VmDisk, data: bytes) -> bytes:
    """Two small writes, in the first and the last (partial) 4 MiB chunk of the disk."""
    data = overwrite(data, 1 * MiB + 3, b"\xab" * 100)
    data = overwrite(data, len(data) - 5000, b"\xcd" * 5000)
    disk.flat.write_bytes(data)
    return data


@pytest.fixture
def after_first_read(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[], None]], None]:
    """Run an action right after the first successful Range read of a disk extent."""

    def install(action: Callable[[], None]) -> None:
        original = DatastoreFiles.read_range
        calls = {"n": 0}

        def read_range(self: DatastoreFiles, file: DatastorePath, offset: int, length: int):
            data = original(self, file, offset, length)
            calls["n"] += 1
            if calls["n"] == 1:
                action()
            return data

        monkeypatch.setattr(DatastoreFiles, "read_range", read_range)

    return install


def full_backup(app: Appliance, vcsim: Vcsim, vsphere: Any, data: bytes) -> VmDisk:  # noqa: F811
    disk = prepare_disk(vsphere, VM, data)
    assert not tracking(disk.vm)
    make_job(app)
    run = app.run_job("vms")
    assert run.state == "succeeded", run.error
    return disk


def test_full_then_incremental_reads_only_the_changed_areas(
    app: Appliance,  # noqa: F811
    vcsim: Vcsim,
    vsphere: Any,
) -> None:
    assert CBT_WINDOW < SIZE  # so that the client must continue after the first answer
    data = disk_bytes(SIZE)
    disk = full_backup(app, vcsim, vsphere, data)
    # Tapir turned CBT on, once, before its snapshot.
    assert tracking(disk.vm)
    assert vcsim.soap_calls()["ReconfigVM_Task"] == 2  # the test's resize, then Tapir's
    (full,) = app.recovery_points(job="vms")
    assert full.level == "full"
    # A full reads only the allocated areas: the zero blocks stay holes, unread.
    allocated = allocated_bytes(data)
    assert allocated <= SIZE - 4 * MiB
    assert served_bytes(vcsim) == allocated
    assert app.runs(job="vms")[0].bytes_read == allocated
    (disk_meta,) = full.meta["disks"]
    assert disk_meta["mode"] == "full" and disk_meta["areas_bytes"] == allocated
    assert full.meta["changed_block_tracking"] is True
    item, restored = read_back(app, full.id)
    assert restored == data
    full_change_id = item.extra["change_id"]
    assert CHANGE_ID.match(full_change_id), full_change_id

    new = guest_writes(disk, data)
    blocks = changed_blocks(data, new)
    assert len(blocks) == 2
    served_before = served_bytes(vcsim)
    calls_before = vcsim.soap_calls()
    run = app.run_job("vms")
    assert run.state == "succeeded", run.error
    incr = next(rp for rp in app.recovery_points(job="vms") if rp.id != full.id)
    assert incr.level == "incremental" and incr.parent_id == full.id
    (disk_meta,) = incr.meta["disks"]
    # vSphere (the fixture) reported exactly the two changed 64 KiB blocks...
    assert disk_meta["mode"] == "incremental"
    assert disk_meta["areas_bytes"] == 2 * CBT_BLOCK
    # ...and only those 128 KiB went over the wire: the engine completes each touched
    # 4 MiB chunk from the parent's copy of it in the disk pool.
    assert served_bytes(vcsim) - served_before == 2 * CBT_BLOCK
    assert run.bytes_read == 2 * CBT_BLOCK
    calls = vcsim.soap_calls()
    # 14.5 MiB in answers of at most 8 MiB: two queries; CBT was on already.
    assert calls["QueryChangedDiskAreas"] - calls_before.get("QueryChangedDiskAreas", 0) == 2
    assert calls["ReconfigVM_Task"] == calls_before["ReconfigVM_Task"]
    # The incremental point is a complete disk; the full one is untouched.
    item, restored = read_back(app, incr.id)
    assert restored == new
    assert CHANGE_ID.match(item.extra["change_id"])
    assert item.extra["change_id"] != full_change_id
    assert read_back(app, full.id)[1] == data
    assert snapshot_names(vsphere, disk.vm) == []


def test_a_reset_change_id_falls_back_to_a_full_read_and_says_so(
    app: Appliance,  # noqa: F811
    vcsim: Vcsim,
    vsphere: Any,
) -> None:
    data = disk_bytes(SIZE, seed=11)
    disk = full_backup(app, vcsim, vsphere, data)
    # An administrator turns CBT off and on again: the stored change id is void.
    set_tracking(disk.vm, False)
    set_tracking(disk.vm, True)
    new = guest_writes(disk, data)
    served_before = served_bytes(vcsim)
    run = app.run_job("vms")
    assert run.state == "warning", run.error
    log = " ".join(line for _, _, line in app.run_log(run.id))
    assert "vSphere refused the change id" in log and "full read" in log
    assert "changeId" in log
    incr = app.recovery_points(job="vms")[0]
    (disk_meta,) = incr.meta["disks"]
    assert disk_meta["mode"] == "full"
    assert served_bytes(vcsim) - served_before == allocated_bytes(new) == run.bytes_read
    assert read_back(app, incr.id)[1] == new
    assert snapshot_names(vsphere, disk.vm) == []


def test_the_fixture_refuses_unknown_change_ids_like_vsphere(vsphere: Any) -> None:
    data = disk_bytes(2 * MiB, seed=12)
    disk = prepare_disk(vsphere, VM, data)
    set_tracking(disk.vm, True)
    task = disk.vm.CreateSnapshot_Task("s", "", False, False)
    WaitForTask(task)
    snap = task.info.result
    snap_disk = next(
        d for d in snap.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk)
    )
    change_id = snap_disk.backing.changeId
    assert CHANGE_ID.match(change_id)
    # The VM's own disk is not changed by the snapshot's change id.
    live = next(
        d for d in disk.vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk)
    )
    assert not live.backing.changeId
    assert changes.changed_areas(disk.vm, snap, disk.key, change_id, len(data)) == []
    assert sum(
        a.length for a in changes.changed_areas(disk.vm, snap, disk.key, "*", len(data))
    ) == allocated_bytes(data)
    for bad in ("52 00/1", change_id.rsplit("/", 1)[0] + "/99", ""):
        with pytest.raises(changes.ChangeIdRefused, match="changeId"):
            changes.changed_areas(disk.vm, snap, disk.key, bad, len(data))
    with pytest.raises(vmodl.MethodFault):
        disk.vm.QueryChangedDiskAreas(
            snapshot=snap, deviceKey=disk.key + 1000, startOffset=0, changeId="*"
        )


def test_a_failure_mid_incremental_leaves_no_point_and_no_snapshot(
    app: Appliance,  # noqa: F811
    vcsim: Vcsim,
    vsphere: Any,
    after_first_read: Any,
) -> None:
    data = disk_bytes(SIZE, seed=13)
    disk = full_backup(app, vcsim, vsphere, data)
    (full,) = app.recovery_points(job="vms")
    guest_writes(disk, data)
    after_first_read(lambda: disk.flat.write_bytes(b"\x01" * MiB))
    run = app.run_job("vms")
    assert run.state == "failed"
    assert "truncated" in (run.error or "")
    assert [rp.id for rp in app.recovery_points(job="vms")] == [full.id]
    assert snapshot_names(vsphere, disk.vm) == []


def test_vcenter_gone_mid_incremental_fails_clearly_and_keeps_no_half_backup(
    app: Appliance,  # noqa: F811
    vcsim: Vcsim,
    vsphere: Any,
    after_first_read: Any,
) -> None:
    data = disk_bytes(SIZE, seed=14)
    disk = full_backup(app, vcsim, vsphere, data)
    (full,) = app.recovery_points(job="vms")
    guest_writes(disk, data)
    after_first_read(vcsim.stop)
    run = app.run_job("vms")
    assert run.state == "failed"
    assert f"lost the connection to {vcsim.address}" in (run.error or "")
    assert [rp.id for rp in app.recovery_points(job="vms")] == [full.id]


def test_vcenter_gone_before_the_change_query_fails_without_falling_back(
    app: Appliance,  # noqa: F811
    vcsim: Vcsim,
    vsphere: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = disk_bytes(4 * MiB, seed=15)
    full_backup(app, vcsim, vsphere, data)
    original = changes.changed_areas

    def stop_first(*args: Any) -> Any:
        vcsim.stop()
        return original(*args)

    monkeypatch.setattr(changes, "changed_areas", stop_first)
    run = app.run_job("vms")
    assert run.state == "failed"
    assert f"lost the connection to {vcsim.address}" in (run.error or "")
    assert "full read" not in " ".join(line for _, _, line in app.run_log(run.id))
    assert len(app.recovery_points(job="vms")) == 1


def test_incremental_after_a_vm_without_cbt_was_found_turns_it_on_once(
    app: Appliance,  # noqa: F811
    vcsim: Vcsim,
    vsphere: Any,
) -> None:
    vm = find_vm(vsphere, VM)
    assert not tracking(vm)
    data = disk_bytes(4 * MiB, seed=16)
    full_backup(app, vcsim, vsphere, data)
    run = app.run_job("vms")
    assert run.state == "succeeded", run.error
    # Nothing changed: no area is read, every chunk comes from the parent.
    assert run.bytes_read == 0
    assert vcsim.soap_calls()["ReconfigVM_Task"] == 2
    latest = app.recovery_points(job="vms")[0]
    assert latest.level == "incremental"
    assert read_back(app, latest.id)[1] == data


def test_cbt_that_cannot_be_turned_on_is_a_warning_and_a_read_of_every_byte(
    app: Appliance,  # noqa: F811
    vcsim: Vcsim,
    vsphere: Any,
) -> None:
    data = disk_bytes(4 * MiB, seed=17)
    disk = prepare_disk(vsphere, VM, data)
    # vcsim refuses any reconfiguration of a template but its name and annotation.
    WaitForTask(disk.vm.PowerOffVM_Task())
    disk.vm.MarkAsTemplate()
    make_job(app)
    run = app.run_job("vms")
    assert run.state == "warning", run.error
    log = " ".join(line for _, _, line in app.run_log(run.id))
    assert "turning on Changed Block Tracking for VM DC0_H0_VM0 failed" in log
    assert "every byte of the disks is read" in log
    assert run.bytes_read == len(data)
    (rp,) = app.recovery_points(job="vms")
    assert rp.meta["changed_block_tracking"] is False
    assert read_back(app, rp.id)[1] == data
    assert vcsim.soap_calls().get("QueryChangedDiskAreas", 0) == 0
