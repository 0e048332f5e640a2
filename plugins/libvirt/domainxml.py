"""What Tapir reads from a domain's XML: its disks, tags and attributes, and new identities.

Tags and custom attributes live in the domain's ``<metadata>`` under Tapir's
namespace (see docs/plugins/libvirt.md)::

    <metadata>
      <tapir:backup xmlns:tapir="https://tapir-backup.org/xmlns/libvirt/1">
        <tapir:tag>prod</tapir:tag>
        <tapir:attribute name="owner">web team</tapir:attribute>
      </tapir:backup>
    </metadata>
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from tapir.appliance.plugin_api import PluginError

METADATA_NS = "https://tapir-backup.org/xmlns/libvirt/1"


@dataclass(frozen=True)
class Disk:
    """One disk of a domain as its XML describes it."""

    target: str  # "vda": the name backups, checkpoints and NBD exports use
    device: str  # disk, cdrom, floppy, lun
    type: str  # file, block, network, volume
    format: str | None  # qcow2, raw...
    source: str | None  # file or device path, or network name
    bus: str | None
    readonly: bool
    shareable: bool

    @property
    def backed_up(self) -> bool:
        """Whether Tapir backs it up: writable disks only (CD-ROMs and shared disks are not
        the domain's own data)."""
        return self.device == "disk" and not self.readonly and not self.shareable

    @property
    def supports_checkpoints(self) -> bool:
        """Only qcow2 holds the persistent dirty bitmaps checkpoints are made of."""
        return self.format == "qcow2"

    def as_dict(self) -> dict[str, object]:
        """The disk as published in an asset's metadata."""
        return {
            "target": self.target,
            "device": self.device,
            "type": self.type,
            "format": self.format,
            "source": self.source,
            "bus": self.bus,
            "readonly": self.readonly,
            "shareable": self.shareable,
        }


@dataclass(frozen=True)
class DomainXml:
    """The parts of a domain definition Tapir uses."""

    name: str
    uuid: str
    title: str | None
    description: str | None
    disks: tuple[Disk, ...]
    tags: tuple[str, ...] = ()
    custom_attributes: dict[str, str] = field(default_factory=dict)


def _parse(xml: str) -> ET.Element:
    try:
        return ET.fromstring(xml)
    except ET.ParseError as exc:
        raise PluginError(f"libvirt returned a domain XML Tapir cannot parse: {exc}") from None


def _disk(elem: ET.Element) -> Disk | None:
    target = elem.find("target")
    if target is None or not target.get("dev"):
        return None
    source = elem.find("source")
    driver = elem.find("driver")
    src = None
    if source is not None:
        src = source.get("file") or source.get("dev") or source.get("name") or source.get("volume")
    return Disk(
        target=str(target.get("dev")),
        device=elem.get("device", "disk"),
        type=elem.get("type", "file"),
        format=driver.get("type") if driver is not None else None,
        source=src,
        bus=target.get("bus"),
        readonly=elem.find("readonly") is not None,
        shareable=elem.find("shareable") is not None,
    )


def parse_domain(xml: str) -> DomainXml:
    """Parse a domain's XML (``virDomainGetXMLDesc``)."""
    root = _parse(xml)
    disks = tuple(d for e in root.findall("./devices/disk") if (d := _disk(e)) is not None)
    tags: list[str] = []
    attributes: dict[str, str] = {}
    for block in root.findall(f"./metadata/{{{METADATA_NS}}}backup"):
        for tag in block.findall(f"{{{METADATA_NS}}}tag"):
            if tag.text and tag.text.strip() and tag.text.strip() not in tags:
                tags.append(tag.text.strip())
        for attr in block.findall(f"{{{METADATA_NS}}}attribute"):
            if attr.get("name"):
                attributes[str(attr.get("name"))] = (attr.text or "").strip()
    return DomainXml(
        name=root.findtext("name", ""),
        uuid=root.findtext("uuid", ""),
        title=root.findtext("title"),
        description=root.findtext("description"),
        disks=disks,
        tags=tuple(tags),
        custom_attributes=attributes,
    )


def restore_definition(
    xml: str, name: str | None, disk_paths: dict[str, tuple[str, str]], new_identity: bool
) -> str:
    """A stored domain XML made definable again: disks pointed at their restored files,
    optionally renamed, with a new UUID and new MAC addresses (libvirt generates them)."""
    root = _parse(xml)
    if name is not None:
        elem = root.find("name")
        if elem is None:
            elem = ET.SubElement(root, "name")
        elem.text = name
    if new_identity:
        for tag in ("uuid", "genid"):
            for elem in root.findall(tag):
                root.remove(elem)
        for iface in root.findall("./devices/interface"):
            for mac in iface.findall("mac"):
                iface.remove(mac)
    for elem in root.findall("./devices/disk"):
        disk = _disk(elem)
        if disk is None or disk.target not in disk_paths:
            continue
        path, fmt = disk_paths[disk.target]
        for child in list(elem):
            if child.tag in ("source", "backingStore"):
                elem.remove(child)
        elem.set("type", "file")
        driver = elem.find("driver")
        if driver is None:
            driver = ET.SubElement(elem, "driver", {"name": "qemu"})
        driver.set("type", fmt)
        elem.append(ET.Element("source", {"file": path}))
    ET.register_namespace("tapir", METADATA_NS)
    return ET.tostring(root, encoding="unicode")
