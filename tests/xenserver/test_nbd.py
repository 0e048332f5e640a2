"""Backups read over XenServer's NBD server (TLS, the certificate XAPI names), which serves
exactly the ranges asked for: a CBT incremental moves only the chunks holding changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_api import PluginError
from tapir.plugins.xenserver.nbd import NbdInfo, NbdReader

from .conftest import MiB, Pool
from .nbd_server import NbdServer
from .test_backup import disks_of_point, make_job, tapir_snapshots
from .xapi_server import self_signed


@pytest.fixture
def nbd_enabled() -> bool:
    return True


def test_full_and_incremental_over_nbd(app: Appliance, pool: Pool) -> None:
    x = pool.server.xapi
    assert x.nbd is not None
    big = x.add_vdi(pool.local_sr, "web01 big", bytes(20 * MiB))
    x.attach(pool.web, big, "2")
    make_job(app)
    run = app.run_job("vms", level="full")
    assert run.state == "succeeded", run.error
    full_size = sum(len(x.read_vdi(d)) for d in [*pool.web_disks, big])
    assert x.nbd.bytes_sent == full_size
    assert x.bytes_exported == 0  # nothing over /export_raw_vdi
    x.write(big, 13 * MiB, b"\x07" * 100)
    expected = {x.db["VDI"][d]["uuid"]: x.read_vdi(d) for d in [*pool.web_disks, big]}
    before = x.nbd.bytes_sent
    run = app.run_job("vms", level="incremental")
    assert run.state == "succeeded", run.error
    # One 64 KiB block changed, and only it crossed the wire.
    assert x.nbd.bytes_sent - before == 64 * 1024
    incr = max(app.recovery_points(job="vms"), key=lambda rp: rp.created_at)
    assert incr.meta["transport"] == ["nbd"]
    assert [d["bytes_received"] for d in incr.meta["disks"]] == [0, 0, 64 * 1024]
    assert disks_of_point(app, incr.id) == expected


def test_an_nbd_server_with_another_certificate_is_refused(
    app: Appliance, pool: Pool, tmp_path: Path
) -> None:
    x = pool.server.xapi
    other, _, _ = self_signed(tmp_path / "other")
    x.nbd_cert = other.read_text()  # XAPI names a certificate the NBD server does not have
    vdis_before = set(x.db["VDI"])
    make_job(app)
    run = app.run_job("vms", level="full")
    assert run.state == "failed"
    assert "not the one XAPI named" in (run.error or "")
    assert app.recovery_points(job="vms") == []
    assert tapir_snapshots(pool, pool.web) == ["before-upgrade"]
    assert set(x.db["VDI"]) == vdis_before


def test_insecure_nbd_and_a_refused_export(tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    image.write_bytes(bytes(range(256)) * 4096)
    server = NbdServer(lambda name: image if name == "/good" else None, tls=None)
    try:
        reader = NbdReader(NbdInfo("127.0.0.1", server.port, "/good", "", ""), 10)
        assert reader.size == 1 << 20
        assert reader.read(1000, 300) == (bytes(range(256)) * 4096)[1000:1300]
        reader.close()
        with pytest.raises(PluginError, match="refused the export"):
            NbdReader(NbdInfo("127.0.0.1", server.port, "/bad", "", ""), 10)
    finally:
        server.stop()
