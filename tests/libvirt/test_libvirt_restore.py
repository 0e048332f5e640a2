"""Restores: disk images in a folder, the domain defined again with a new identity."""

from __future__ import annotations

import contextlib

import libvirt
import pytest
from libvirt_helpers import MiB, qemu_img_compare, request

from tapir.appliance.plugin_api import PluginError, RestoreRequest
from tapir.appliance.plugin_api.testing.memory_sink import MemoryRestoreSource, MemorySink
from tapir.plugins.libvirt.domainxml import parse_domain

PREFILLED = ((0x11, 0, MiB), (0x22, 8 * MiB, 512 * 1024))


@pytest.fixture
def backed_up(plugin, endpoint, ctx, make_domain):
    dom = make_domain(writes=PREFILLED)
    sink = MemorySink()
    plugin.backup(request(dom, endpoint), sink, ctx)
    return dom, sink


def _restore(plugin, ctx, dom, sink, target, endpoint=None, overwrite="never", **options):
    req = RestoreRequest(
        asset=request(dom, endpoint).asset,
        target=target,
        options=options,
        endpoint=endpoint,
        overwrite=overwrite,
    )
    return plugin.restore(req, MemoryRestoreSource(sink), ctx)


def test_restore_defines_a_copy_with_new_name_uuid_and_mac(
    plugin, endpoint, ctx, conn, backed_up, libvirtd
):
    dom, sink = backed_up
    target = libvirtd.root / "images" / "restored"
    copy_name = f"{dom.name()}-copy"
    try:
        result = _restore(plugin, ctx, dom, sink, target, endpoint, define=True, name=copy_name)
        copy = conn.lookupByName(copy_name)
        info = parse_domain(copy.XMLDesc(0))
        assert copy.UUIDString() != dom.UUIDString()
        assert "52:54:00:12:34:56" not in copy.XMLDesc(0)  # libvirt gave a new MAC
        (disk,) = info.disks
        assert disk.source == str(target / f"{copy_name}-vda.qcow2") and disk.format == "qcow2"
        assert any(copy_name in w for w in result.warnings)
        copy.create()  # the restored definition and image really run
        copy.destroy()
        # The restored image holds the guest data of the backup.
        image = target / f"{copy_name}-vda.qcow2"
        original = libvirtd.root / "images" / f"{dom.name()}-vda.qcow2"
        dom.suspend()
        try:
            assert qemu_img_compare(image, "qcow2", str(original), "qcow2").returncode == 0
        finally:
            dom.resume()
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            conn.lookupByName(copy_name).undefine()


def test_restore_refuses_to_overwrite_an_image(plugin, ctx, backed_up, tmp_path):
    dom, sink = backed_up
    tmp_path = tmp_path / "out"
    _restore(plugin, ctx, dom, sink, tmp_path, format="raw")
    image = tmp_path / f"{dom.name()}-vda.raw"
    assert image.stat().st_size == 64 * MiB
    with pytest.raises(PluginError, match="refusing to overwrite"):
        _restore(plugin, ctx, dom, sink, tmp_path, format="raw")
    assert sorted(p.name for p in tmp_path.iterdir()) == [image.name]
    _restore(plugin, ctx, dom, sink, tmp_path, format="raw") if False else None


def test_restore_checks_its_options(plugin, ctx, backed_up, tmp_path):
    dom, sink = backed_up
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    with pytest.raises(PluginError, match="format must be raw or qcow2"):
        _restore(plugin, ctx, dom, sink, tmp_path, format="vmdk")
    with pytest.raises(PluginError, match="give a target folder"):
        _restore(plugin, ctx, dom, sink, None)
    with pytest.raises(PluginError, match="names no libvirt endpoint"):
        _restore(plugin, ctx, dom, sink, tmp_path, define=True)
    # Refused before anything was written.
    assert list(tmp_path.iterdir()) == []


def test_restore_one_disk_into_an_existing_domain(
    plugin, endpoint, ctx, backed_up, make_domain, libvirtd
):
    dom, sink = backed_up
    other = make_domain("-other")
    target = libvirtd.root / "images" / "attached"
    result = _restore(
        plugin, ctx, dom, sink, target, endpoint, attach_to=other.name(), format="qcow2"
    )
    image = target / f"{dom.name()}-vda.qcow2"
    disks = {d.target: d for d in parse_domain(other.XMLDesc(0)).disks}
    assert disks["vdb"].source == str(image)  # attached live
    inactive = parse_domain(other.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).disks
    assert str(image) in [d.source for d in inactive]  # and in its definition
    assert any(f"attached to {other.name()} as vdb" in w for w in result.warnings)
    with pytest.raises(PluginError, match="no domain 'nowhere'"):
        _restore(plugin, ctx, dom, sink, target / "x", endpoint, attach_to="nowhere")
    assert not (target / "x").exists()  # refused before anything was written


def test_define_over_an_existing_domain_is_refused(plugin, endpoint, ctx, backed_up, tmp_path):
    dom, sink = backed_up
    before = dom.XMLDesc(0)
    with pytest.raises(PluginError, match=f"a domain named {dom.name()} exists"):
        _restore(plugin, ctx, dom, sink, tmp_path / "o", endpoint, define=True)
    with pytest.raises(PluginError, match="has the stored UUID"):
        _restore(
            plugin, ctx, dom, sink, tmp_path / "o", endpoint,
            define=True, name="fresh-name", new_identity=False,
        )  # fmt: skip
    assert dom.XMLDesc(0) == before and not (tmp_path / "o").exists()
