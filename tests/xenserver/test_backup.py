"""Backups through the real engine against the XAPI test server: full, CBT incremental
(only changed blocks on the wire), SR without CBT, snapshot clean-up after failures."""

from __future__ import annotations

from typing import Any

from tapir.appliance.datapath.reader import RecoveryPointReader
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_api import ItemKind

from .conftest import MiB, Pool
from .xapi_server import CBT_BLOCK


def make_job(app: Appliance, vm: str = "web01", name: str = "vms", **options: Any) -> None:
    app.create_job(
        name, "xenserver", "default", options=options, selection={"assets": [vm]}, endpoint="xen"
    )


def disks_of_point(app: Appliance, rp_id: str) -> dict[str, bytes]:
    """Each disk of a recovery point by its VDI uuid, read back through the engine."""
    reader = RecoveryPointReader(app.repository("default"), rp_id)
    out = {}
    for item in reader.items():
        if item.kind == ItemKind.DISK:
            image = reader.open_disk(item)
            out[str(item.extra["vdi_uuid"])] = image.pread(0, image.size)
    return out


def tapir_snapshots(pool: Pool, vm: str) -> list[str]:
    x = pool.server.xapi
    return [x.db["VM"][s]["name_label"] for s in x.db["VM"][vm]["snapshots"]]


def vdi_types(pool: Pool, vdi: str) -> list[str]:
    """The types of the snapshot VDIs left of a disk."""
    x = pool.server.xapi
    return sorted(x.db["VDI"][s]["type"] for s in x.db["VDI"][vdi]["snapshots"])


def test_full_backup_reads_back_byte_for_byte_and_leaves_only_cbt_metadata(
    app: Appliance, pool: Pool
) -> None:
    x = pool.server.xapi
    originals = {x.db["VDI"][d]["uuid"]: x.read_vdi(d) for d in pool.web_disks}
    make_job(app)
    run = app.run_job("vms", level="full")
    assert run.state == "succeeded", run.error
    assert x.bytes_exported == sum(len(d) for d in originals.values())
    (rp,) = app.recovery_points(job="vms")
    assert rp.level == "full" and rp.plugin == "xenserver"
    assert disks_of_point(app, rp.id) == originals
    assert rp.meta["vm"]["name_label"] == "web01"
    assert rp.meta["snapshot"] == {"quiesced": False, "memory": False}
    assert [d["mode"] for d in rp.meta["disks"]] == ["full", "full"]
    # The snapshot VM is gone (the administrator's stays); each disk keeps one
    # data-destroyed snapshot as the next incremental's reference.
    assert tapir_snapshots(pool, pool.web) == ["before-upgrade"]
    for disk in pool.web_disks:
        assert x.db["VDI"][disk]["cbt_enabled"] is True
        assert vdi_types(pool, disk) == ["cbt_metadata", "user"]


def test_cbt_incremental_transfers_only_changed_blocks(app: Appliance, pool: Pool) -> None:
    x = pool.server.xapi
    make_job(app)
    assert app.run_job("vms", level="full").state == "succeeded"
    # The guest writes: 100 KiB inside blocks 16-17 of disk 0, 10 bytes across the
    # boundary of blocks 32 and 33 of disk 1.
    x.write(pool.web_disks[0], 1 * MiB + 5, b"\xaa" * 100 * 1024)
    x.write(pool.web_disks[1], 2 * MiB + CBT_BLOCK - 5, b"\x55" * 10)
    expected = {x.db["VDI"][d]["uuid"]: x.read_vdi(d) for d in pool.web_disks}
    before = x.bytes_exported
    run = app.run_job("vms", level="incremental")
    assert run.state == "succeeded", run.error
    assert x.calls["VDI.list_changed_blocks"] == 2
    full, incr = sorted(app.recovery_points(job="vms"), key=lambda rp: rp.created_at)
    assert incr.level == "incremental"
    # CBT named exactly the four changed 64 KiB blocks, and only those crossed the
    # wire (the engine completes each touched chunk from the parent's copy).
    assert [d["bytes_changed"] for d in incr.meta["disks"]] == [2 * CBT_BLOCK, 2 * CBT_BLOCK]
    assert [d["bytes_received"] for d in incr.meta["disks"]] == [2 * CBT_BLOCK, 2 * CBT_BLOCK]
    assert x.bytes_exported - before == 4 * CBT_BLOCK
    assert [d["mode"] for d in incr.meta["disks"]] == ["incremental", "incremental"]
    # A synthetic full: the new point alone gives the whole new disks.
    assert disks_of_point(app, incr.id) == expected
    # The full point still reads as it was.
    assert disks_of_point(app, full.id) != expected
    # The older CBT reference was replaced by the new one.
    for disk in pool.web_disks:
        assert vdi_types(pool, disk) == ["cbt_metadata", "user"]
    assert tapir_snapshots(pool, pool.web) == ["before-upgrade"]


def test_sr_without_cbt_falls_back_to_full_backups_with_a_note(app: Appliance, pool: Pool) -> None:
    x = pool.server.xapi
    make_job(app, vm="legacy01", name="legacy")
    run = app.run_job("legacy", level="full")
    assert run.state == "warning", run.error
    log = " ".join(line for _, _, line in app.run_log(run.id))
    assert "does not support changed block tracking" in log
    size = len(x.read_vdi(pool.legacy_disk))
    before = x.bytes_exported
    run = app.run_job("legacy", level="incremental")
    assert run.state == "warning", run.error
    assert x.bytes_exported - before == size
    log = " ".join(line for _, _, line in app.run_log(run.id))
    assert "has no changed block tracking: full read" in log
    # No snapshot VDI is kept for a disk without CBT.
    assert x.db["VDI"][pool.legacy_disk]["snapshots"] == []
    latest = max(app.recovery_points(job="legacy"), key=lambda rp: rp.created_at)
    assert disks_of_point(app, latest.id) == {
        x.db["VDI"][pool.legacy_disk]["uuid"]: x.read_vdi(pool.legacy_disk)
    }


def test_export_cut_short_fails_without_a_point_and_removes_the_snapshot(
    app: Appliance, pool: Pool
) -> None:
    x = pool.server.xapi
    vdis_before = set(x.db["VDI"])
    make_job(app)
    x.faults.cut_export_after = 1 * MiB + 17
    run = app.run_job("vms", level="full")
    assert run.state == "failed"
    assert "lost the connection" in (run.error or "") or "ended" in (run.error or "")
    assert app.recovery_points(job="vms") == []
    assert tapir_snapshots(pool, pool.web) == ["before-upgrade"]
    # Every snapshot VDI of the failed run is gone too.
    assert set(x.db["VDI"]) == vdis_before


def test_an_xapi_error_mid_backup_removes_the_snapshot(app: Appliance, pool: Pool) -> None:
    x = pool.server.xapi
    vdis_before = set(x.db["VDI"])
    make_job(app)
    x.faults.calls["VDI.get_uuid"] = ["INTERNAL_ERROR", "injected"]
    run = app.run_job("vms", level="full")
    assert run.state == "failed"
    assert "INTERNAL_ERROR injected" in (run.error or "")
    assert tapir_snapshots(pool, pool.web) == ["before-upgrade"]
    assert set(x.db["VDI"]) == vdis_before


def test_snapshot_left_by_a_killed_run_is_removed_at_the_next_run(
    app: Appliance, pool: Pool
) -> None:
    x = pool.server.xapi
    from tapir.plugins.xenserver import snapshots

    with x.lock:
        orphan = x._VM_snapshot(pool.web, "tapir-20260101T000000Z")
        x.db["VM"][orphan]["name_description"] = snapshots.DESCRIPTION
        # An administrator's snapshot with the same prefix but not Tapir's description.
        x._VM_snapshot(pool.web, "tapir-before-upgrade")
    make_job(app)
    run = app.run_job("vms", level="full")
    assert run.state == "warning", run.error
    log = " ".join(line for _, _, line in app.run_log(run.id))
    assert "removed tapir-20260101T000000Z of VM web01, left by an earlier run" in log
    assert sorted(tapir_snapshots(pool, pool.web)) == ["before-upgrade", "tapir-before-upgrade"]
    assert orphan not in x.db["VM"]


def test_quiesce_where_allowed_and_a_warning_where_not(app: Appliance, pool: Pool) -> None:
    x = pool.server.xapi
    make_job(app, quiesce=True)
    run = app.run_job("vms", level="full")
    assert run.state == "warning"
    log = " ".join(line for _, _, line in app.run_log(run.id))
    assert "does not allow a quiesced snapshot" in log
    x.db["VM"][pool.web]["allowed_operations"].append("snapshot_with_quiesce")
    run = app.run_job("vms", level="full")
    assert run.state == "succeeded", run.error
    latest = max(app.recovery_points(job="vms"), key=lambda rp: rp.created_at)
    assert latest.meta["snapshot"]["quiesced"] is True
    assert x.calls["VM.snapshot_with_quiesce"] == 1


def test_a_server_without_range_support_is_read_as_one_stream(app: Appliance, pool: Pool) -> None:
    """Real XAPI answers /export_raw_vdi with the whole VDI, whatever the Range header."""
    x = pool.server.xapi
    x.faults.honour_range = False
    make_job(app)
    assert app.run_job("vms", level="full").state == "succeeded"
    x.write(pool.web_disks[0], 9 * MiB, b"\x01" * 10)
    expected = {x.db["VDI"][d]["uuid"]: x.read_vdi(d) for d in pool.web_disks}
    run = app.run_job("vms", level="incremental")
    assert run.state == "succeeded", run.error
    incr = max(app.recovery_points(job="vms"), key=lambda rp: rp.created_at)
    assert [d["ranged"] for d in incr.meta["disks"]] == [False, None]
    assert disks_of_point(app, incr.id) == expected
