"""Full and incremental backups in pull mode against a real libvirtd and QEMU."""

from __future__ import annotations

import libvirt
import pytest
from libvirt_helpers import MiB, guest_write, live_disk, qemu_img_compare, request

from tapir.appliance.plugin_api import BackupLevel, ItemKind, PluginError, RestoreRequest
from tapir.appliance.plugin_api.testing.memory_sink import MemoryRestoreSource, MemorySink
from tapir.plugins.libvirt import checkpoints
from tapir.plugins.libvirt.domainxml import parse_domain

CHUNK = 4 * MiB  # the memory sink's disk chunk

# Written into the image before the domain starts: 1 MiB at 0, 512 KiB at 8 MiB.
PREFILLED = ((0x11, 0, MiB), (0x22, 8 * MiB, 512 * 1024))


def _disk(result, target="vda"):
    (disk,) = [d for d in result.metadata["disks"] if d["target"] == target]
    return disk


def _no_backup_job(dom):
    with pytest.raises(libvirt.libvirtError) as exc:
        dom.backupGetXMLDesc(0)
    return exc.value.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_BACKUP


def _full(plugin, endpoint, ctx, dom):
    sink = MemorySink()
    result = plugin.backup(request(dom, endpoint), sink, ctx)
    sink.check_complete()
    return sink, result


def _incremental(plugin, endpoint, ctx, dom, parent):
    sink = MemorySink(parent=parent.as_parent())
    result = plugin.backup(request(dom, endpoint, BackupLevel.INCREMENTAL), sink, ctx)
    sink.check_complete()
    return sink, result


def test_full_backup_reads_allocated_extents_and_stores_the_definition(
    plugin, endpoint, ctx, make_domain
):
    dom = make_domain(writes=PREFILLED)

    sink, result = _full(plugin, endpoint, ctx, dom)

    disk = _disk(result)
    assert disk["mode"] == "full"
    assert disk["bytes_changed"] == MiB + 512 * 1024  # only the allocated clusters
    assert disk["bytes_read"] == 2 * CHUNK  # the memory sink reads the two chunks touched
    item = sink.item(b"disks/vda")
    assert item.kind == ItemKind.DISK and item.size == 64 * MiB
    assert item.extra["checkpoint"] == result.metadata["checkpoint"]
    assert checkpoints.names(dom) == [result.metadata["checkpoint"]]
    stored = parse_domain(sink.file_bytes(b"domain.xml").decode())
    assert stored.uuid == dom.UUIDString() and stored.disks[0].target == "vda"
    assert _no_backup_job(dom)
    assert result.warnings == []


def test_incremental_reads_only_guest_writes_and_restores_equal_to_the_live_disk(
    plugin, endpoint, ctx, make_domain, tmp_path
):
    dom = make_domain(writes=PREFILLED)
    full, first = _full(plugin, endpoint, ctx, dom)
    guest_write(dom, 0xAB, MiB, 64 * 1024)  # right after the prefilled MiB
    guest_write(dom, 0xCD, 20 * MiB, 128 * 1024)
    guest_write(dom, 0xEF, 8 * MiB, 64 * 1024)  # over prefilled data

    incr, second = _incremental(plugin, endpoint, ctx, dom, full)

    disk = _disk(second)
    assert disk["mode"] == "incremental"
    assert disk["bytes_changed"] == 256 * 1024
    assert disk["extents"] == 3
    assert disk["bytes_read"] == 3 * CHUNK  # the chunks at 0, 8 and 20 MiB
    assert second.metadata["since_checkpoint"] == first.metadata["checkpoint"]
    # The full's checkpoint stays until a newer point exists; nothing older is kept.
    assert checkpoints.names(dom) == sorted(
        [first.metadata["checkpoint"], second.metadata["checkpoint"]]
    )

    target = tmp_path / "restored"
    plugin.restore(
        RestoreRequest(
            asset=request(dom, endpoint).asset, target=target, options={"format": "raw"}
        ),
        MemoryRestoreSource(incr),
        ctx,
    )
    dom.suspend()
    try:
        compared = qemu_img_compare(
            target / f"{dom.name()}-vda.raw", "raw", live_disk(dom), "qcow2"
        )
    finally:
        dom.resume()
    assert compared.returncode == 0, compared.stdout + compared.stderr


def test_a_third_backup_removes_the_oldest_checkpoint(plugin, endpoint, ctx, make_domain):
    dom = make_domain()
    full, _ = _full(plugin, endpoint, ctx, dom)
    incr, second = _incremental(plugin, endpoint, ctx, dom, full)
    guest_write(dom, 0x01, 0, 4096)
    _, third = _incremental(plugin, endpoint, ctx, dom, incr)

    assert _disk(third)["bytes_changed"] == 64 * 1024  # one qcow2 cluster
    assert checkpoints.names(dom) == sorted(
        [second.metadata["checkpoint"], third.metadata["checkpoint"]]
    )


def test_incremental_without_parent_is_a_full_saying_so(plugin, endpoint, ctx, make_domain):
    dom = make_domain(writes=PREFILLED)
    result = plugin.backup(request(dom, endpoint, BackupLevel.INCREMENTAL), MemorySink(), ctx)
    assert _disk(result)["mode"] == "full"
    assert any("no previous recovery point" in w for w in result.warnings)


def test_a_checkpoint_deleted_by_hand_leads_to_a_full(plugin, endpoint, ctx, make_domain):
    dom = make_domain(writes=PREFILLED)
    full, first = _full(plugin, endpoint, ctx, dom)
    dom.checkpointLookupByName(first.metadata["checkpoint"]).delete(0)

    _, second = _incremental(plugin, endpoint, ctx, dom, full)

    assert _disk(second)["mode"] == "full"
    assert any("is gone from the domain" in w for w in second.warnings)


def test_checkpoints_broken_by_a_hard_kill_lead_to_a_full_saying_so(
    plugin, endpoint, ctx, make_domain, libvirtd
):
    dom = make_domain(writes=PREFILLED)
    full, _ = _full(plugin, endpoint, ctx, dom)
    libvirtd_kill(libvirtd, dom)
    dom.create()
    guest_write(dom, 0xAB, 2 * MiB, 64 * 1024)

    incr, second = _incremental(plugin, endpoint, ctx, dom, full)

    assert _disk(second)["mode"] == "full"
    assert _disk(second)["bytes_changed"] == MiB + 512 * 1024 + 64 * 1024
    assert any("checkpoints of domain" in w and "broken" in w for w in second.warnings)
    assert checkpoints.names(dom) == [second.metadata["checkpoint"]]
    # The chain goes on from the new full.
    guest_write(dom, 0xCD, 3 * MiB, 64 * 1024)
    _, third = _incremental(plugin, endpoint, ctx, dom, incr)
    assert _disk(third)["mode"] == "incremental" and _disk(third)["bytes_changed"] == 64 * 1024


def libvirtd_kill(libvirtd, dom):
    """Kill the domain's QEMU with SIGKILL and wait until libvirt sees it stopped."""
    import os
    import signal

    pid = libvirtd.qemu_pid(dom.name())
    os.kill(pid, signal.SIGKILL)
    while dom.isActive():
        dom.state()  # each call waits on libvirt, which notices the monitor closing


def test_domain_destroyed_mid_backup_fails_without_a_point(plugin, endpoint, ctx, make_domain):
    dom = make_domain(writes=PREFILLED)
    full, first = _full(plugin, endpoint, ctx, dom)

    class DestroyingSink(MemorySink):
        def add_disk(self, item, read, extents=None, parent=None):
            dom.destroy()
            return super().add_disk(item, read, extents=extents, parent=parent)

    sink = DestroyingSink(parent=full.as_parent())
    with pytest.raises(PluginError, match=r"NBD export|stopped during the backup"):
        plugin.backup(request(dom, endpoint, BackupLevel.INCREMENTAL), sink, ctx)

    assert not dom.isActive()
    # The half-made checkpoint is gone; the full's stays for the next incremental.
    assert checkpoints.names(dom) == [first.metadata["checkpoint"]]


def test_a_second_backup_while_one_runs_is_refused_at_once(plugin, endpoint, ctx, make_domain):
    dom = make_domain()
    dom.backupBegin(
        f"<domainbackup mode='pull'><server transport='unix' socket='{ctx.state_dir}/o.sock'/>"
        "</domainbackup>",
        None,
    )
    try:
        with pytest.raises(PluginError, match="backup job is already running on domain"):
            plugin.backup(request(dom, endpoint), MemorySink(), ctx)
    finally:
        dom.abortJob()
    assert checkpoints.names(dom) == []


def test_a_second_backup_from_this_appliance_is_refused(plugin, endpoint, ctx, make_domain):
    from tapir.plugins.libvirt.job import domain_lock

    dom = make_domain()
    with (
        domain_lock(ctx, dom.UUIDString(), dom.name()),
        pytest.raises(PluginError, match="already running on this appliance"),
    ):
        plugin.backup(request(dom, endpoint), MemorySink(), ctx)


def test_a_shut_off_domain_is_backed_up_from_its_files_and_cannot_start_meanwhile(
    plugin, endpoint, ctx, make_domain, tmp_path
):
    dom = make_domain(writes=PREFILLED, start=False)
    start_errors = []

    class StartingSink(MemorySink):
        def add_disk(self, item, read, extents=None, parent=None):
            try:
                dom.create()
            except libvirt.libvirtError as exc:
                start_errors.append(exc.get_error_message())
            return super().add_disk(item, read, extents=extents, parent=parent)

    sink = StartingSink()
    result = plugin.backup(request(dom, endpoint), sink, ctx)
    sink.check_complete()

    assert result.metadata["backup_mode"] == "offline"
    disk = _disk(result)
    assert disk["mode"] == "full" and disk["bytes_changed"] == MiB + 512 * 1024
    assert any("is shut off: full backup of its image files" in w for w in result.warnings)
    # QEMU could not take its write lock while Tapir read the image.
    assert len(start_errors) == 1 and "lock" in start_errors[0]
    assert not dom.isActive()
    assert sink.file_bytes(b"domain.xml")
    # Restored, the image equals the file.
    target = tmp_path / "restored"
    plugin.restore(
        RestoreRequest(
            asset=request(dom, endpoint).asset, target=target, options={"format": "raw"}
        ),
        MemoryRestoreSource(sink),
        ctx,
    )
    compared = qemu_img_compare(target / f"{dom.name()}-vda.raw", "raw", live_disk(dom), "qcow2")
    assert compared.returncode == 0, compared.stdout
    # Started again, the next incremental is a full one (no checkpoint yet), saying so.
    dom.create()
    _, second = _incremental(plugin, endpoint, ctx, dom, sink)
    assert _disk(second)["mode"] == "full"
    assert any("records no checkpoint" in w for w in second.warnings)


def test_a_shut_off_domain_whose_disk_is_not_here_is_refused_clearly(
    plugin, endpoint, ctx, make_domain, libvirtd
):
    dom = make_domain(start=False)
    (libvirtd.root / "images" / f"{dom.name()}-vda.qcow2").unlink()
    with pytest.raises(PluginError, match="is shut off and its disks vda are not image files"):
        plugin.backup(request(dom, endpoint), MemorySink(), ctx)


def test_quiesce_without_guest_agent_warns(plugin, endpoint, ctx, make_domain):
    dom = make_domain()
    result = plugin.backup(request(dom, endpoint, quiesce=True), MemorySink(), ctx)
    assert any("quiesce asked" in w and "crash-consistent" in w for w in result.warnings)
    assert _no_backup_job(dom)
