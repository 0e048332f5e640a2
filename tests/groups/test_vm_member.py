"""A VMware job as a consistency group member (issue #9), on the real vcsim.

The application member is a small plugin defined here: its freeze and thaw ask vcsim
how many snapshots it has been asked for at that moment, which proves that the VM
snapshot was taken while the application was frozen, and not when it refused.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyVim.task import WaitForTask
from vcsim_server import Vcsim
from vmware.appliances import vcsim_appliance
from vmware.conftest import vcsim, vcsim_binary, vsphere  # noqa: F401  (fixtures)
from vmware.vm_disks import MiB, disk_bytes, prepare_disk, snapshot_names

from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_api import (
    ApplicationPlugin,
    AssetInfo,
    BackupRequest,
    BackupResult,
    EndpointInfo,
    Item,
    ItemKind,
    PluginContext,
    PluginError,
    hookimpl,
)

VM = "DC0_H0_VM0"
SNAPSHOTS = "CreateSnapshot_Task"


class GuestDatabase(ApplicationPlugin):
    """One database; freeze and thaw note how many snapshots vcsim was asked for."""

    name = "guestdb"
    title = "A database in the guest (test)"

    def __init__(self, simulator: Vcsim) -> None:
        self.vcsim = simulator
        self.refuse = False
        self.calls: list[tuple[str, int]] = []  # (call, snapshots so far)
        self._lock = threading.Lock()

    def _note(self, call: str) -> None:
        taken = self.vcsim.soap_calls().get(SNAPSHOTS, 0)
        with self._lock:
            self.calls.append((call, taken))

    def discover(self, endpoint: EndpointInfo | None, ctx: PluginContext) -> list[AssetInfo]:
        return [AssetInfo("database", "orders", "db-orders")]

    def freeze(self, asset: AssetInfo, ctx: PluginContext) -> None:
        self._note("freeze")
        if self.refuse:
            raise PluginError("orders: a transaction holds the lock")

    def mark(self, asset: AssetInfo, ctx: PluginContext, label: str) -> dict[str, object]:
        return {"restore_point": label}

    def thaw(self, asset: AssetInfo, ctx: PluginContext) -> None:
        self._note("thaw")

    def backup(self, request: BackupRequest, sink: Any, ctx: PluginContext) -> BackupResult:
        with sink.open_file(Item(path=b"dump.sql", kind=ItemKind.FILE, mode=0o100644)) as f:
            f.write(b"INSERT INTO orders VALUES (1);\n")
        return BackupResult(metadata={"mark": request.options.get("consistency_mark")})

    def restore(self, request: Any, source: Any, ctx: PluginContext) -> Any:
        raise PluginError("not restored in these tests")


class _Registration:
    __name__ = "guestdb_group_test_plugin"

    def __init__(self, plugin: GuestDatabase) -> None:
        self.plugin = plugin

    @hookimpl
    def tapir_application_plugins(self) -> list[ApplicationPlugin]:
        return [self.plugin]


@pytest.fixture
def guestdb(vcsim: Vcsim) -> GuestDatabase:  # noqa: F811
    return GuestDatabase(vcsim)


@pytest.fixture
def app(tmp_path: Path, vcsim: Vcsim, guestdb: GuestDatabase) -> Iterator[Appliance]:  # noqa: F811
    """vmware, disk and the guest database; the group ``shop`` of job ``db`` and VM job ``vms``."""
    appliance = vcsim_appliance(tmp_path, vcsim, extra=[_Registration(guestdb)])
    appliance.create_job("db", "guestdb", "default")
    appliance.create_job("vms", "vmware", "default", selection={"assets": [VM]}, endpoint="vc")
    appliance.create_group("shop", ["db", "vms"])
    yield appliance
    appliance.close()


def test_the_vm_snapshot_is_taken_while_the_application_is_frozen(
    app: Appliance,
    vsphere: Any,  # noqa: F811
    guestdb: GuestDatabase,
) -> None:
    disk = prepare_disk(vsphere, VM, disk_bytes(4 * MiB, seed=11))
    grun = app.run_group("shop")
    assert grun.state == "succeeded", grun.error
    # Frozen before the only snapshot was asked for, thawed once it was taken.
    assert guestdb.calls == [("freeze", 0), ("thaw", 1)]
    assert guestdb.vcsim.soap_calls().get(SNAPSHOTS, 0) == 1
    members = {m.job_name: m for m in grun.members}
    assert members["db"].mark == {"restore_point": grun.label}
    assert members["vms"].mark == {"consistency_group": grun.label}
    assert all(m.state == "succeeded" and m.recovery_point_id for m in members.values())
    (vm_point,) = app.recovery_points(job="vms")
    assert vm_point.id == members["vms"].recovery_point_id
    assert vm_point.meta["consistency_group"] == grun.label
    (db_point,) = app.recovery_points(job="db")
    assert db_point.meta["mark"] == {"restore_point": grun.label}
    assert snapshot_names(vsphere, disk.vm) == []  # the transfer ended and removed it


def test_a_refused_freeze_takes_no_snapshot_and_fails_the_group(
    app: Appliance,
    vsphere: Any,  # noqa: F811
    guestdb: GuestDatabase,
) -> None:
    disk = prepare_disk(vsphere, VM, disk_bytes(4 * MiB, seed=12))
    guestdb.refuse = True
    grun = app.run_group("shop")
    assert grun.state == "failed"
    assert "member db (orders) could not freeze" in (grun.error or "")
    assert "a transaction holds the lock" in (grun.error or "")
    assert guestdb.vcsim.soap_calls().get(SNAPSHOTS, 0) == 0
    assert guestdb.calls == [("freeze", 0)]
    assert app.recovery_points(job="vms") == []
    (vm_run,) = app.runs(job="vms")
    assert vm_run.state == "failed"
    assert "gave up before the snapshot" in (vm_run.error or "")
    assert snapshot_names(vsphere, disk.vm) == []


def test_a_vm_backup_that_ends_before_its_snapshot_thaws_all_and_fails_the_group(
    app: Appliance,
    vsphere: Any,  # noqa: F811
    guestdb: GuestDatabase,
) -> None:
    disk = prepare_disk(vsphere, VM, disk_bytes(4 * MiB, seed=13))
    # A snapshot of the user's: the VMware backup refuses before taking its own.
    WaitForTask(disk.vm.CreateSnapshot_Task("user", "", False, False), si=vsphere)
    grun = app.run_group("shop")
    assert grun.state == "failed"
    error = grun.error or ""
    assert f"member vms ({VM}): no snapshot" in error and "has snapshots (user)" in error
    # Frozen, then thawed without any snapshot of the group's (only the user's one).
    assert guestdb.calls == [("freeze", 1), ("thaw", 1)]
    assert app.recovery_points(job="vms") == [] and app.recovery_points(job="db") == []
    assert snapshot_names(vsphere, disk.vm) == ["user"]
