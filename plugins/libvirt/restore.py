"""Restoring a domain's recovery point: disk images into a folder, optionally defined again.

Each disk is written sparse to a temporary file beside its destination (converted
to qcow2 with ``qemu-img`` when asked) and renamed into place only when complete,
so a failed restore never leaves a half image under the final name. With
``define``, the stored domain XML is defined on the endpoint with its disks
pointing at the restored files (a new name, UUID and MAC addresses when asked).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from xml.sax.saxutils import quoteattr

import libvirt

from tapir.appliance.plugin_api import (
    Item,
    ItemKind,
    PluginContext,
    PluginError,
    RestoreRequest,
    RestoreResult,
    RestoreSource,
)

from .backup import DOMAIN_XML
from .connection import connect, describe
from .domainxml import parse_domain, restore_definition
from .options import ConnectionSettings, parse_bool

RAW = "raw"
QCOW2 = "qcow2"
_PIECE = 4 * 1024 * 1024
_ZERO = bytes(_PIECE)


def _pieces(item: Item) -> list[tuple[int, int, bool]]:
    """(offset, length, is_hole) over the whole disk, following the chunk list when whole."""
    if item.chunks and item.stored_size == item.size:
        return [(off, ref.length, ref.id is None) for off, ref in item.chunk_offsets()]
    return [(off, min(_PIECE, item.size - off), False) for off in range(0, item.size, _PIECE)]


def write_raw(item: Item, fd: int, source: RestoreSource, ctx: PluginContext) -> None:
    """Write the disk's data to ``fd``, leaving holes and zero pieces unwritten."""
    disk = source.open_disk(item)
    for offset, length, hole in _pieces(item):
        ctx.check_canceled()
        if not hole:
            data = disk.pread(offset, length)
            if len(data) != length:
                raise PluginError(f"{item.path!r}: read {len(data)} of {length} bytes at {offset}")
            if data != _ZERO[: len(data)]:
                view = memoryview(data)
                while view:
                    written = os.pwrite(fd, view, offset + len(data) - len(view))
                    view = view[written:]
        ctx.progress.advance(bytes_done=length, current=item.path.decode(errors="replace"))
    os.ftruncate(fd, item.size)
    os.fsync(fd)


def _restore_disk(
    item: Item, dest: Path, fmt: str, source: RestoreSource, ctx: PluginContext
) -> None:
    fd, raw_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".partial")
    raw = Path(raw_name)
    converted = raw.with_suffix(".qcow2.partial")
    try:
        try:
            write_raw(item, fd, source, ctx)
        finally:
            os.close(fd)
        final = raw
        if fmt == QCOW2:
            result = subprocess.run(
                ["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(converted)],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise PluginError(f"converting {item.path!r} to qcow2 failed: {result.stderr}")
            final = converted
        os.chmod(final, 0o600)
        os.replace(final, dest)
    except OSError as exc:
        raise PluginError(f"restoring {item.path!r} to {dest} failed: {exc}") from None
    finally:
        raw.unlink(missing_ok=True)
        converted.unlink(missing_ok=True)


def _free_target(dom: libvirt.virDomain) -> str:
    used = {d.target for d in parse_domain(dom.XMLDesc(0)).disks}
    used |= {d.target for d in parse_domain(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).disks}
    for letter in "bcdefghijklmnopqrstuvwxyz":
        if f"vd{letter}" not in used:
            return f"vd{letter}"
    raise PluginError(f"domain {dom.name()} has no free virtio disk name left")


def attach_disk(conn: libvirt.virConnect, domain: str, image: Path, fmt: str) -> str:
    """Attach ``image`` to ``domain`` as a new virtio disk (live too when it runs)."""
    try:
        dom = conn.lookupByName(domain)
    except libvirt.libvirtError:
        raise PluginError(f"attach_to: no domain {domain!r} on {conn.getURI()}") from None
    dev = _free_target(dom)
    xml = (
        f"<disk type='file' device='disk'><driver name='qemu' type={quoteattr(fmt)}/>"
        f"<source file={quoteattr(str(image))}/><target dev='{dev}' bus='virtio'/></disk>"
    )
    flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
    if dom.isActive():
        flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
    try:
        dom.attachDeviceFlags(xml, flags)
    except libvirt.libvirtError as exc:
        raise PluginError(f"attaching {image} to {domain} failed: {describe(exc)}") from None
    return dev


def _check_free(settings: ConnectionSettings, name: str, uuid: str | None) -> None:
    """Refuse to define over an existing domain (defineXML would replace its definition)."""
    with connect(settings) as conn:
        with contextlib.suppress(libvirt.libvirtError):
            conn.lookupByName(name)
            raise PluginError(
                f"a domain named {name} exists on {settings.uri}: restore under another name "
                "(option name=...)"
            )
        if uuid:
            with contextlib.suppress(libvirt.libvirtError):
                existing = conn.lookupByUUIDString(uuid)
                raise PluginError(
                    f"domain {existing.name()} on {settings.uri} has the stored UUID {uuid}: "
                    "set new_identity=true (or remove that domain)"
                )


def restore_domain(
    settings: ConnectionSettings | None,
    request: RestoreRequest,
    source: RestoreSource,
    ctx: PluginContext,
) -> RestoreResult:
    """Restore disks as ``<target folder>/<name>-<disk>.<format>``; options: ``format`` (raw,
    qcow2), ``define`` (define the domain from the stored XML), ``name``, ``new_identity``,
    ``attach_to`` (attach the restored disks to an existing domain)."""
    opts = request.options
    fmt = str(opts.get("format") or QCOW2)
    if fmt not in (RAW, QCOW2):
        raise PluginError(f"restore option format must be raw or qcow2, not {fmt!r}")
    define = parse_bool(opts.get("define", False), "define")
    attach_to = str(opts["attach_to"]) if opts.get("attach_to") else None
    if define and attach_to:
        raise PluginError("give either define or attach_to, not both")
    if attach_to and settings is None:
        raise PluginError("attach_to asked but the restore names no libvirt endpoint")
    name = str(opts.get("name") or request.asset.name)
    new_identity = parse_bool(opts.get("new_identity", "name" in opts), "new_identity")
    if request.target is None:
        raise PluginError(
            "restoring over the original disks is not implemented: give a target folder "
            "(the disks are written there, and defined as a domain with define=true)"
        )
    if define and fmt == QCOW2 and shutil.which("qemu-img") is None:
        raise PluginError("qcow2 restores need qemu-img (Debian package qemu-utils)")
    result = RestoreResult()
    items = list(source.items(request.paths))
    disks = [i for i in items if i.kind == ItemKind.DISK]
    xml_item = next((i for i in items if i.path == DOMAIN_XML), None)
    if not disks:
        raise PluginError("nothing to restore: no disk in the recovery point matches")
    if define and xml_item is None:
        raise PluginError("define asked but the recovery point holds no domain.xml")
    if define and settings is None:
        raise PluginError("define asked but the restore names no libvirt endpoint")
    stored = None
    if define:
        assert xml_item is not None and settings is not None
        with source.open(xml_item) as stream:
            stored = stream.read().decode()
        _check_free(settings, name, None if new_identity else parse_domain(stored).uuid)
    if attach_to:
        assert settings is not None
        with connect(settings) as conn:
            try:
                conn.lookupByName(attach_to)
            except libvirt.libvirtError:
                raise PluginError(f"attach_to: no domain {attach_to!r} on {settings.uri}") from None
    request.target.mkdir(parents=True, exist_ok=True)
    dests = {}
    for item in disks:
        target = str(item.extra.get("target") or item.path.rsplit(b"/", 1)[-1].decode())
        dest = request.target / f"{name}-{target}.{fmt}"
        if dest.exists() and request.overwrite != "always":
            raise PluginError(f"refusing to overwrite {dest}; set overwrite to 'always'")
        dests[target] = (item, dest)
    ctx.progress.set_total(bytes_total=sum(i.size for i in disks), items_total=len(disks))
    for target, (item, dest) in dests.items():
        ctx.logger.info("restoring disk %s to %s as %s", target, dest, fmt)
        _restore_disk(item, dest, fmt, source, ctx)
        result.items_restored += 1
        result.bytes_restored += item.size
        ctx.progress.advance(items_done=1)
    if attach_to:
        assert settings is not None
        with connect(settings) as conn:
            for target, (_item, dest) in dests.items():
                dev = attach_disk(conn, attach_to, dest, fmt)
                result.warnings.append(f"disk {target} attached to {attach_to} as {dev}")
    if define:
        assert stored is not None and settings is not None
        paths = {t: (str(d), fmt) for t, (_i, d) in dests.items()}
        xml = restore_definition(stored, name, paths, new_identity)
        with connect(settings) as conn:
            try:
                dom = conn.defineXML(xml)
            except libvirt.libvirtError as exc:
                raise PluginError(f"defining domain {name} failed: {describe(exc)}") from None
            result.warnings.append(f"defined domain {name} ({dom.UUIDString()})")
        result.items_restored += 1
    return result
