"""NBD over TCP, scratch files, and disks that cannot hold checkpoints (raw)."""

from __future__ import annotations

import dataclasses
import socket
import subprocess

from libvirt_helpers import MiB, guest_write, request

from tapir.appliance.plugin_api import BackupLevel
from tapir.appliance.plugin_api.testing.memory_sink import MemorySink


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _raw_disk(path) -> str:
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(path), "16M"], check=True)
    subprocess.run(
        ["qemu-io", "-f", "raw", "-c", "write -P 0x33 4M 256k", str(path)],
        check=True,
        capture_output=True,
    )
    return (
        f"<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
        f"<source file='{path}'/><target dev='vdb' bus='virtio'/></disk>"
    )


def _by_target(result):
    return {d["target"]: d for d in result.metadata["disks"]}


def test_backup_over_tcp(plugin, endpoint, ctx, make_domain):
    dom = make_domain(writes=((0x11, 0, MiB),))
    tcp = dataclasses.replace(
        endpoint,
        options={"nbd_transport": "tcp", "nbd_host": "127.0.0.1", "nbd_port": _free_port()},
    )
    sink = MemorySink()
    result = plugin.backup(request(dom, tcp), sink, ctx)
    sink.check_complete()
    assert _by_target(result)["vda"]["bytes_changed"] == MiB


def test_a_raw_disk_is_read_in_full_beside_an_incremental_qcow2(
    plugin, endpoint, ctx, make_domain, libvirtd
):
    raw = libvirtd.root / "images" / "raw-vdb.img"
    try:
        dom = make_domain(extra_disks=(_raw_disk(raw),))
        full = MemorySink()
        first = plugin.backup(request(dom, endpoint), full, ctx)
        # The file system's allocation of the raw file: the written 256 KiB, plus the
        # first block QEMU allocates when it opens a raw file (its alignment probe).
        raw_data = _by_target(first)["vdb"]["bytes_changed"]
        assert 256 * 1024 <= raw_data <= 256 * 1024 + 4096
        assert full.item(b"disks/vdb").extra["checkpoint"] is None
        guest_write(dom, 0xAB, 0, 64 * 1024)

        incr = MemorySink(parent=full.as_parent())
        second = plugin.backup(request(dom, endpoint, BackupLevel.INCREMENTAL), incr, ctx)
        incr.check_complete()

        disks = _by_target(second)
        assert disks["vda"]["mode"] == "incremental" and disks["vda"]["bytes_changed"] == 64 * 1024
        assert disks["vdb"]["mode"] == "full" and disks["vdb"]["bytes_changed"] == raw_data
        assert any("vdb is raw, not qcow2" in w for w in second.warnings)
        # Tapir named the scratch files (mixed modes) and removed them after the job.
        assert not list((libvirtd.root / "images").glob("*.tapir-scratch"))
    finally:
        raw.unlink(missing_ok=True)


def test_scratch_files_go_to_scratch_dir_and_are_removed(
    plugin, endpoint, ctx, make_domain, tmp_path
):
    dom = make_domain(writes=((0x11, 0, MiB),))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with_scratch = dataclasses.replace(endpoint, options={"scratch_dir": str(scratch)})
    result = plugin.backup(request(dom, with_scratch), MemorySink(), ctx)
    assert _by_target(result)["vda"]["bytes_changed"] == MiB
    assert list(scratch.iterdir()) == []
