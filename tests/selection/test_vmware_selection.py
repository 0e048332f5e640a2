"""End to end with a real (simulated) vCenter: a VM created in a protected folder is
backed up by the job's next run, without anyone touching the job."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyVim.task import WaitForTask
from pyVmomi import vim
from vcsim_server import Vcsim
from vmware.appliances import vcsim_appliance
from vmware.inventory_changes import find, remove_vm

from tapir.appliance.catalog.models import RunState
from tapir.appliance.engine.service import Appliance

from .conftest import log_of

PROD = "/DC0/vm/prod"


@pytest.fixture
def app(tmp_path: Path, vcsim: Vcsim) -> Iterator[Appliance]:
    appliance = vcsim_appliance(tmp_path, vcsim, pool="pool")
    yield appliance
    appliance.close()


def create_vm_in(si: Any, folder: Any, name: str, power_on: bool = False) -> None:
    """A new VM in ``folder``, on DC0's standalone host, as an administrator makes one."""
    dc = find(si, vim.Datacenter, "DC0")
    pool = find(si, vim.HostSystem, "DC0_H0").parent.resourcePool
    spec = vim.vm.ConfigSpec(
        name=name,
        guestId="otherGuest",
        files=vim.vm.FileInfo(vmPathName=f"[{dc.datastore[0].name}]"),
    )
    task = folder.CreateVM_Task(config=spec, pool=pool)
    WaitForTask(task, si=si)
    if power_on:
        WaitForTask(task.info.result.PowerOnVM_Task(), si=si)


def backed_up(app: Appliance, run_id: int) -> list[str]:
    return sorted(rp.asset.name for rp in app.recovery_points() if rp.run_id == run_id)


def test_a_vm_created_in_a_protected_folder_is_picked_up_by_the_next_run(
    app: Appliance, vsphere: Any
) -> None:
    prod = find(vsphere, vim.Datacenter, "DC0").vmFolder.CreateFolder("prod")
    create_vm_in(vsphere, prod, "web-01", power_on=True)
    create_vm_in(vsphere, prod, "web-old")  # powered off: excluded
    app.create_job(
        "prod",
        "vmware",
        "pool",
        endpoint="vc",
        selection={"include": [f"folder={PROD}"], "exclude": ["power_state=poweredOff"]},
    )
    first = app.run_job("prod")
    assert first.state == RunState.SUCCEEDED, first.error
    assert backed_up(app, first.id) == ["web-01"]
    log = log_of(app, first.id)
    assert f"INFO web-01: selected by rule folder={PROD}" in log
    assert f"INFO web-old: excluded by rule power_state=poweredOff (matched folder={PROD})" in log
    # The simulator's own VMs live in /DC0/vm and /F0/DC1/vm: never candidates.
    assert not any("DC0_H0_VM0" in line for line in log)

    # A day later an administrator creates a VM in the protected folder (inside a subfolder).
    team = prod.CreateFolder("team-a")
    create_vm_in(vsphere, team, "web-02", power_on=True)
    preview = app.preview_selection("prod", discover=True)
    assert [(r["name"], r["reason"]) for r in preview.as_records()] == [
        ("web-01", f"rule folder={PROD}"),
        ("web-02", f"rule folder={PROD}"),
        ("web-old", "excluded by power_state=poweredOff"),
    ]
    second = app.run_job("prod")
    assert second.state == RunState.SUCCEEDED, second.error
    assert backed_up(app, second.id) == ["web-01", "web-02"]
    assert "INFO discovery of endpoint vc: 15 found, 0 new, 0 gone" in log_of(app, second.id)

    # web-01 is deleted: marked gone, no longer selected, its backups stay.
    remove_vm(vsphere, "web-01")
    third = app.run_job("prod")
    assert third.state == RunState.SUCCEEDED, third.error
    assert backed_up(app, third.id) == ["web-02"]
    assets = {a.name: a.present for a in app.endpoint_assets("vc")}
    assert assets["web-01"] is False and assets["web-02"] is True
    assert len(app.recovery_points(asset="web-01")) == 2
