"""Helpers of the libvirt plugin tests: domain definitions, guest writes, requests."""

from __future__ import annotations

import subprocess
from pathlib import Path
from xml.sax.saxutils import escape

import libvirt
import libvirt_qemu

from tapir.appliance.plugin_api import AssetInfo, BackupLevel, BackupRequest, EndpointInfo

MiB = 1024 * 1024


def domain_xml(
    name: str,
    image: Path,
    extra_disks: tuple[str, ...] = (),
    metadata: str = "",
    title: str | None = None,
) -> str:
    """A small KVM domain with no guest OS: SeaBIOS finds nothing to boot and idles."""
    title_xml = f"<title>{escape(title)}</title>" if title else ""
    return f"""<domain type='kvm'>
  <name>{escape(name)}</name>{title_xml}
  <metadata>{metadata}</metadata>
  <memory unit='MiB'>32</memory><vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/><source file='{escape(str(image))}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    {"".join(extra_disks)}
    <interface type='user'><mac address='52:54:00:12:34:56'/><model type='virtio'/></interface>
    <memballoon model='none'/>
  </devices>
</domain>"""


def guest_write(dom: libvirt.virDomain, pattern: int, offset: int, length: int) -> None:
    """Write into the running guest's disk vda through QEMU's monitor (qemu-io)."""
    out = libvirt_qemu.qemuMonitorCommand(
        dom,
        "qemu-io -d /machine/peripheral/virtio-disk0/virtio-backend "
        f'"write -P {pattern:#x} {offset} {length}"',
        libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP,
    )
    assert "rror" not in out and "not found" not in out, out


def request(
    dom: libvirt.virDomain,
    endpoint: EndpointInfo,
    level: str = BackupLevel.FULL,
    **options: object,
) -> BackupRequest:
    """A backup request for ``dom`` on ``endpoint``."""
    asset = AssetInfo(kind="vm", name=dom.name(), external_id=dom.UUIDString())
    return BackupRequest(asset=asset, level=level, options=dict(options), endpoint=endpoint)


def live_disk(dom: libvirt.virDomain) -> str:
    """The file behind vda."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(dom.XMLDesc(0))
    source = root.find("./devices/disk/source")
    assert source is not None
    return str(source.get("file"))


def qemu_img_compare(a: Path, fmt_a: str, b: str, fmt_b: str) -> subprocess.CompletedProcess[str]:
    """``qemu-img compare`` (``-U``: the live image stays open in QEMU)."""
    return subprocess.run(
        ["qemu-img", "compare", "-U", "-f", fmt_a, "-F", fmt_b, str(a), b],
        capture_output=True,
        text=True,
        check=False,
    )
