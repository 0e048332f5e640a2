"""Restores against the XAPI test server: disk images downloaded, a whole VM created again,
one disk into an existing VM; every byte compared."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tapir.appliance.datapath.reader import RecoveryPointReader
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_api import (
    AssetInfo,
    EndpointInfo,
    PluginContext,
    PluginError,
    RestoreRequest,
)
from tapir.plugins.xenserver.role import XenServerPlugin

from .conftest import PASSWORD, USER, Pool
from .test_backup import make_job


@pytest.fixture
def point(app: Appliance, pool: Pool) -> str:
    """A full then an incremental point of web01 (restores use the incremental)."""
    make_job(app)
    assert app.run_job("vms", level="full").state == "succeeded"
    pool.server.xapi.write(pool.web_disks[0], 5 * 1024 * 1024, b"changed" * 1000)
    assert app.run_job("vms", level="incremental").state == "succeeded"
    latest = max(app.recovery_points(job="vms"), key=lambda rp: rp.created_at)
    return str(latest.id)


def test_download_writes_each_disk_as_a_raw_image(
    app: Appliance, pool: Pool, point: str, tmp_path: Path
) -> None:
    x = pool.server.xapi
    result = app.restore(point, target=tmp_path / "out")
    assert not result.failed
    for disk in pool.web_disks:
        rec = x.db["VDI"][disk]
        userdevice = "0" if disk == pool.web_disks[0] else "1"
        image = tmp_path / "out" / f"{userdevice}-{rec['uuid']}.raw"
        assert image.read_bytes() == x.read_vdi(disk)
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_whole_vm_restore_creates_a_new_vm_with_the_same_disks(
    app: Appliance, pool: Pool, point: str
) -> None:
    x = pool.server.xapi
    vms_before = set(x.db["VM"])
    result = app.restore(point, in_place=True)
    assert not result.failed, result.failed
    (new_vm,) = set(x.db["VM"]) - vms_before
    rec = x.db["VM"][new_vm]
    assert rec["name_label"].startswith("web01 (restored ")
    assert rec["power_state"] == "Halted"
    assert rec["memory_static_max"] == x.db["VM"][pool.web]["memory_static_max"]
    assert rec["other_config"]["folder"] == "/prod/web"
    restored = {}
    for vbd in rec["VBDs"]:
        vrec = x.db["VBD"][vbd]
        restored[vrec["userdevice"]] = (vrec["bootable"], x.read_vdi(vrec["VDI"]))
    assert restored == {
        "0": (True, x.read_vdi(pool.web_disks[0])),
        "1": (False, x.read_vdi(pool.web_disks[1])),
    }
    # The original VM is untouched.
    assert len(x.db["VM"][pool.web]["VBDs"]) == 2


def _plugin_restore(app: Appliance, pool: Pool, point: str, **options: object):
    reader = RecoveryPointReader(app.repository("default"), point)
    endpoint = EndpointInfo(
        "xen",
        "xenserver",
        pool.server.address,
        {"user": USER, "password_secret": "s", "fingerprint": pool.server.fingerprint},
    )
    ctx = PluginContext(logger=logging.getLogger("test"), read_secret=lambda name: PASSWORD)
    request = RestoreRequest(
        asset=AssetInfo("vm", "web01", "x"), options=dict(options), endpoint=endpoint
    )
    return XenServerPlugin().restore(request, reader, ctx)


def test_one_disk_into_an_existing_vm(app: Appliance, pool: Pool, point: str) -> None:
    x = pool.server.xapi
    legacy_uuid = x.db["VM"][pool.legacy]["uuid"]
    result = _plugin_restore(app, pool, point, restore="disk", vm=legacy_uuid, disk="1")
    assert result.items_restored == 1
    vbds = x.db["VM"][pool.legacy]["VBDs"]
    assert len(vbds) == 2
    new = x.db["VBD"][vbds[-1]]
    assert new["userdevice"] == "1"  # the first free device number
    assert x.read_vdi(new["VDI"]) == x.read_vdi(pool.web_disks[1])


def test_one_disk_needs_a_single_match(app: Appliance, pool: Pool, point: str) -> None:
    x = pool.server.xapi
    vdis_before = set(x.db["VDI"])
    with pytest.raises(PluginError, match="2 match"):
        _plugin_restore(app, pool, point, restore="disk", vm="legacy01")
    assert set(x.db["VDI"]) == vdis_before


def test_a_failed_import_leaves_no_half_restored_vdi(
    app: Appliance, pool: Pool, point: str
) -> None:
    x = pool.server.xapi
    vdis_before = set(x.db["VDI"])
    x.faults.calls["VBD.create"] = ["INTERNAL_ERROR", "injected"]
    with pytest.raises(PluginError, match="INTERNAL_ERROR injected"):
        _plugin_restore(app, pool, point, restore="disk", vm="legacy01", disk="0")
    assert set(x.db["VDI"]) == vdis_before


def test_a_failed_whole_vm_restore_leaves_no_vm_and_no_vdi(
    app: Appliance, pool: Pool, point: str
) -> None:
    x = pool.server.xapi
    vms_before, vdis_before = set(x.db["VM"]), set(x.db["VDI"])
    # The second disk is refused: the first one is already restored by then.
    x.faults.calls["VBD.create"] = ["SR_FULL", "1", "0"]
    x.faults.skip["VBD.create"] = 1
    with pytest.raises(PluginError, match="SR_FULL"):
        _plugin_restore(app, pool, point)
    assert set(x.db["VM"]) == vms_before
    assert set(x.db["VDI"]) == vdis_before
