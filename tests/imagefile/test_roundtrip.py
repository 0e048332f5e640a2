"""Full backups of real raw and qcow2 images, restored and compared with the source."""

from __future__ import annotations

import filecmp
import json
import os
import subprocess

import pytest

from tapir.appliance.plugin_api import Extent, ItemKind, PluginError, RestoreRequest
from tapir.appliance.plugin_api.testing.memory_sink import MemoryRestoreSource
from tapir.plugins.imagefile.extents import raw_allocated_extents

from .helpers import (
    MiB,
    RecordingSink,
    allocated_bytes,
    make_qcow2,
    make_raw,
    qemu_img,
    qemu_nbd_children,
    request_for,
)

SIZE = 20 * MiB


def _restore(plugin, ctx, sink, target, **kw):
    request = RestoreRequest(asset=plugin_asset(plugin, sink), target=target, **kw)
    return plugin.restore(request, MemoryRestoreSource(sink), ctx)


def plugin_asset(plugin, sink):
    return plugin.image_set(None, {"images": [sink.items[0].extra["source"]]}).asset()


def test_raw_full_backup_passes_allocated_extents_and_restores_identical(plugin, ctx, tmp_path):
    image = make_raw(tmp_path / "system.img", SIZE)
    sink = RecordingSink()
    result = plugin.backup(request_for(plugin, images=[str(image)]), sink, ctx)

    (call,) = sink.calls
    assert call.item.path == b"disks/0-system.img"
    assert call.item.kind == ItemKind.DISK
    assert call.item.size == SIZE
    assert call.item.extra["format"] == "raw"
    assert call.item.extra["source"] == str(image)
    assert call.parent is None
    fd = os.open(image, os.O_RDONLY)
    try:
        assert call.extents == raw_allocated_extents(fd, SIZE)
    finally:
        os.close(fd)
    # The holes between the written areas were not handed over as data.
    assert sum(e.length for e in call.extents) < SIZE // 2
    assert result.warnings == []
    assert result.metadata["disks"][0]["mode"] == "full"

    out = tmp_path / "restored"
    restored = _restore(plugin, ctx, sink, out)
    assert restored.items_restored == 1
    assert filecmp.cmp(image, out / "system.img", shallow=False)
    # Sparse: the written zero run and the holes take no space.
    assert allocated_bytes(out / "system.img") < allocated_bytes(image)
    assert allocated_bytes(out / "system.img") < 4 * MiB


def test_qcow2_backup_restores_as_raw_and_as_qcow2(plugin, ctx, tmp_path):
    raw = make_raw(tmp_path / "src.raw", SIZE)
    image = make_qcow2(tmp_path / "data.qcow2", raw)
    sink = RecordingSink()
    plugin.backup(request_for(plugin, images=[str(image)]), sink, ctx)
    assert qemu_nbd_children() == []

    (call,) = sink.calls
    assert call.item.extra["format"] == "qcow2"
    assert call.item.size == SIZE
    # qemu-img convert drops the zero run; what remains are the data areas.
    assert Extent(0, 300 * 1024) in call.extents or call.extents[0].offset == 0
    assert sum(e.length for e in call.extents) < 8 * MiB

    as_raw = tmp_path / "as_raw"
    _restore(plugin, ctx, sink, as_raw)
    assert filecmp.cmp(raw, as_raw / "data.qcow2", shallow=False)

    as_qcow2 = tmp_path / "as_qcow2"
    _restore(plugin, ctx, sink, as_qcow2, options={"format": "qcow2"})
    info = json.loads(qemu_img("info", "--output=json", str(as_qcow2 / "data.qcow2")))
    assert info["format"] == "qcow2"
    assert info["virtual-size"] == SIZE
    qemu_img("compare", "-f", "qcow2", "-F", "qcow2", str(image), str(as_qcow2 / "data.qcow2"))
    # Nothing is left behind but the images themselves.
    assert sorted(p.name for p in as_qcow2.iterdir()) == ["data.qcow2"]


def test_qcow2_with_backing_file_reads_the_guest_view(plugin, ctx, tmp_path):
    base_raw = make_raw(tmp_path / "base.raw", SIZE)
    base = make_qcow2(tmp_path / "base.qcow2", base_raw)
    top = tmp_path / "top.qcow2"
    qemu_img("create", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(top))
    subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 5M 64k", str(top)],
        check=True,
        capture_output=True,
    )
    sink = RecordingSink()
    plugin.backup(request_for(plugin, images=[str(top)]), sink, ctx)
    assert sink.items[0].extra["backing_file"] == str(base)
    out = tmp_path / "out"
    _restore(plugin, ctx, sink, out)
    qemu_img("compare", "-f", "qcow2", "-F", "raw", str(top), str(out / "top.qcow2"))


def test_several_images_form_one_machine(plugin, ctx, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = make_raw(tmp_path / "a" / "disk.img", 6 * MiB)
    second = make_raw(tmp_path / "b" / "disk.img", 18 * MiB)
    sink = RecordingSink()
    plugin.backup(request_for(plugin, images=[str(first), str(second)], name="web1"), sink, ctx)
    assert [i.path for i in sink.items] == [b"disks/0-disk.img", b"disks/1-disk.img"]

    out = tmp_path / "out"
    result = _restore(plugin, ctx, sink, out)
    # Two disks with one name do not overwrite each other.
    assert result.items_restored == 2
    assert any("several disks" in w for w in result.warnings)
    assert filecmp.cmp(first, out / "0-disk.img", shallow=False)
    assert filecmp.cmp(second, out / "1-disk.img", shallow=False)


def test_restore_of_selected_paths_only(plugin, ctx, tmp_path):
    first = make_raw(tmp_path / "one.img", 5 * MiB)
    second = make_raw(tmp_path / "two.img", 5 * MiB)
    sink = RecordingSink()
    plugin.backup(request_for(plugin, images=[str(first), str(second)]), sink, ctx)
    out = tmp_path / "out"
    _restore(plugin, ctx, sink, out, paths=[b"disks/1-two.img"])
    assert sorted(p.name for p in out.iterdir()) == ["two.img"]
    assert filecmp.cmp(second, out / "two.img", shallow=False)


def test_empty_and_unaligned_disks(plugin, ctx, tmp_path):
    empty = tmp_path / "empty.img"
    empty.write_bytes(b"")
    odd = tmp_path / "odd.img"
    odd.write_bytes(os.urandom(4 * MiB + 513))
    sink = RecordingSink()
    plugin.backup(request_for(plugin, images=[str(empty), str(odd)]), sink, ctx)
    assert sink.calls[0].extents == []
    assert sink.calls[1].extents == [Extent(0, 4 * MiB + 513)]
    out = tmp_path / "out"
    _restore(plugin, ctx, sink, out)
    assert (out / "empty.img").stat().st_size == 0
    assert filecmp.cmp(odd, out / "odd.img", shallow=False)


def test_restore_to_the_original_place_needs_overwrite_always(plugin, ctx, tmp_path):
    image = make_raw(tmp_path / "vm.img", 8 * MiB)
    original = image.read_bytes()
    sink = RecordingSink()
    plugin.backup(request_for(plugin, images=[str(image)]), sink, ctx)
    with open(image, "r+b") as f:
        f.write(b"damaged" * 100)
    with pytest.raises(PluginError, match="refusing to overwrite"):
        _restore(plugin, ctx, sink, None)
    assert image.read_bytes()[:7] == b"damaged"
    _restore(plugin, ctx, sink, None, overwrite="always")
    assert image.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vm.img"]
