"""Backups through the VDDK transport, end to end: the real engine, vcsim for the SOAP
calls and the snapshot, the real nbdkit and libnbd around the VDDK test doubles
(``fake_vddk/``) serving the VM's disk file from vcsim's datastore folder."""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyVim.task import WaitForTask
from vcsim_server import Vcsim

from tapir.appliance.datapath.reader import RecoveryPointReader
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_api import ItemKind
from tapir.plugins.vmware.connection import format_fingerprint

from .appliances import vcsim_appliance
from .cbt_helpers import CBT_BLOCK, allocated_bytes, served_bytes
from .fake_vddk import FakeVddk, build_fake_vddk
from .test_vddk import _nbdkit_children
from .vm_disks import MiB, disk_bytes, prepare_disk, snapshot_names

VM = "DC0_H0_VM0"
SIZE = 10 * MiB + 256 * 1024


@pytest.fixture(scope="module")
def fake_vddk(tmp_path_factory: pytest.TempPathFactory) -> FakeVddk:
    return build_fake_vddk(tmp_path_factory.mktemp("fake-vddk"))


@pytest.fixture
def app(tmp_path: Path, vcsim: Vcsim, fake_vddk: FakeVddk) -> Iterator[Appliance]:
    """An appliance whose vCenter endpoint reads disks through VDDK."""
    appliance = vcsim_appliance(
        tmp_path,
        vcsim,
        endpoint_options={
            "vddk_libdir": str(fake_vddk.libdir),
            "vddk_plugin": str(fake_vddk.plugin),
        },
    )
    appliance.create_job("vms", "vmware", "default", selection={"assets": [VM]}, endpoint="vc")
    yield appliance
    appliance.close()
    assert _nbdkit_children() == []


def _serve(monkeypatch: pytest.MonkeyPatch, vcsim: Vcsim, vm: Any, flat: Path, password: str):
    """What the fake VDDK checks and serves (it reads nbdkit's environment)."""
    pem = ssl.get_server_certificate((vcsim.host, vcsim.port))
    thumbprint = format_fingerprint(hashlib.sha1(ssl.PEM_cert_to_DER_cert(pem)).hexdigest())
    for name, value in {
        "FAKE_VDDK_DISK": str(flat),
        "FAKE_VDDK_SERVER": vcsim.host,
        "FAKE_VDDK_THUMBPRINT": thumbprint,
        "FAKE_VDDK_USER": vcsim.username,
        "FAKE_VDDK_PASSWORD": password,
        "FAKE_VDDK_VM": vm._moId,
        "FAKE_VDDK_SNAPSHOT": "*",  # the backup's own snapshot, made during the run
        "FAKE_VDDK_FILE": f"[LocalDS_0] {VM}/disk1.vmdk",
    }.items():
        monkeypatch.setenv(name, value)


def test_full_and_incremental_backups_read_the_disk_through_vddk(
    app: Appliance, vcsim: Vcsim, vsphere: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = disk_bytes(SIZE, seed=3)
    disk = prepare_disk(vsphere, VM, data)
    _serve(monkeypatch, vcsim, disk.vm, disk.flat, vcsim.password)
    before = served_bytes(vcsim)
    run = app.run_job("vms")
    assert run.state == "succeeded", run.error
    # The data came through VDDK: not one byte of the flat extent over HTTPS.
    assert served_bytes(vcsim) == before
    (rp,) = app.recovery_points(job="vms")
    assert rp.meta["transport"] == "vddk"
    reader = RecoveryPointReader(app.repository("default"), rp.id)
    (item,) = [i for i in reader.items() if i.kind == ItemKind.DISK]
    assert item.extra["transport"] == "vddk"
    image = reader.open_disk(item)
    assert image.pread(0, image.size) == data
    assert snapshot_names(vsphere, disk.vm) == []

    # An incremental: CBT names the changed areas, VDDK reads them.
    changed = data[: 3 * MiB] + b"\x5a" * 65536 + data[3 * MiB + 65536 :]
    disk.flat.write_bytes(changed)
    run = app.run_job("vms", level="incremental")
    assert run.state == "succeeded", run.error
    assert served_bytes(vcsim) == before
    newest = max(app.recovery_points(job="vms"), key=lambda p: p.created_at)
    assert newest.level == "incremental"
    reader = RecoveryPointReader(app.repository("default"), newest.id)
    (item,) = [i for i in reader.items() if i.kind == ItemKind.DISK]
    assert reader.open_disk(item).pread(0, SIZE) == changed


def _write_sparse(path: Path, data: bytes, block: int = CBT_BLOCK) -> None:
    """``data`` with its all-zero blocks left as holes (what a thin disk looks like)."""
    with open(path, "r+b") as f:
        f.truncate(0)
        f.truncate(len(data))
        for offset in range(0, len(data), block):
            piece = data[offset : offset + block]
            if piece.count(0) != len(piece):
                f.seek(offset)
                f.write(piece)


def test_without_cbt_a_full_reads_only_what_vddk_reports_allocated(
    app: Appliance, vcsim: Vcsim, vsphere: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = disk_bytes(SIZE, seed=4)
    disk = prepare_disk(vsphere, VM, data)
    _write_sparse(disk.flat, data)
    # vcsim refuses any reconfiguration of a template: CBT cannot be turned on.
    WaitForTask(disk.vm.PowerOffVM_Task())
    disk.vm.MarkAsTemplate()
    _serve(monkeypatch, vcsim, disk.vm, disk.flat, vcsim.password)
    run = app.run_job("vms")
    assert run.state == "warning", run.error
    # VDDK's allocation map (QueryAllocatedBlocks) spared the holes: only the data read.
    assert run.bytes_read == allocated_bytes(data) < SIZE
    assert vcsim.soap_calls().get("QueryChangedDiskAreas", 0) == 0
    (rp,) = app.recovery_points(job="vms")
    assert rp.meta["changed_block_tracking"] is False
    reader = RecoveryPointReader(app.repository("default"), rp.id)
    (item,) = [i for i in reader.items() if i.kind == ItemKind.DISK]
    assert reader.open_disk(item).pread(0, SIZE) == data


def test_a_refused_vddk_login_fails_the_run_and_removes_the_snapshot(
    app: Appliance, vcsim: Vcsim, vsphere: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = disk_bytes(SIZE, seed=5)
    disk = prepare_disk(vsphere, VM, data)
    # The fake VDDK expects another password than the endpoint's: VDDK refuses the login.
    _serve(monkeypatch, vcsim, disk.vm, disk.flat, "not-the-endpoint-password")
    run = app.run_job("vms")
    assert run.state == "failed"
    assert "VDDK could not log in" in (run.error or "")
    assert app.recovery_points(job="vms") == []
    assert snapshot_names(vsphere, disk.vm) == []
