"""The private libvirtd fixture: isolated from the host, and nothing left running."""

from __future__ import annotations

import subprocess
from pathlib import Path

import libvirt
import psutil
from libvirt_helpers import domain_xml
from libvirtd_server import start_libvirtd


def test_daemon_uses_its_own_folders(libvirtd, conn, make_domain):
    dom = make_domain()
    assert conn.getType() == "QEMU"
    # Its definitions land in the temporary folder, never in the host's /etc/libvirt.
    assert (libvirtd.root / "etc" / "qemu" / f"{dom.name()}.xml").is_file()
    assert not Path(f"/etc/libvirt/qemu/{dom.name()}.xml").exists()
    assert "libvirt-qemu" not in Path("/etc/passwd").read_text()
    assert libvirtd.qemu_pid(dom.name()) > 0


def test_stop_kills_daemon_and_every_qemu(tmp_path):
    daemon = start_libvirtd(tmp_path / "d")
    conn = libvirt.open(daemon.uri)
    image = tmp_path / "d" / "images" / "x.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "16M"], check=True)
    dom = conn.defineXML(domain_xml("x", image))
    dom.create()
    qemu = psutil.Process(daemon.qemu_pid("x"))
    conn.close()

    daemon.stop()

    assert daemon.process.poll() is not None
    assert daemon.namespace_processes() == []
    assert not qemu.is_running() or qemu.status() == psutil.STATUS_ZOMBIE
