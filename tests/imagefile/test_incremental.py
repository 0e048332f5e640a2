"""Incrementals: only the changed extents are handed over, with the parent disk."""

from __future__ import annotations

import filecmp
import json
import os
import subprocess

from tapir.appliance.plugin_api import BackupLevel, Extent, RestoreRequest
from tapir.appliance.plugin_api.testing.memory_sink import MemoryRestoreSource

from .helpers import (
    MiB,
    RecordingSink,
    make_qcow2,
    make_raw,
    qemu_img,
    request_for,
    write_at,
)

SIZE = 24 * MiB


def _full(plugin, ctx, image):
    sink = RecordingSink()
    plugin.backup(request_for(plugin, images=[str(image)]), sink, ctx)
    return sink


def _incremental(plugin, ctx, parent_sink, images, changes=None):
    options = {"images": [str(i) for i in images]}
    if changes is not None:
        options["changed_extents"] = str(changes)
    sink = RecordingSink(parent=parent_sink.as_parent())
    result = plugin.backup(request_for(plugin, BackupLevel.INCREMENTAL, **options), sink, ctx)
    return sink, result


def _write_changes(path, changes):
    path.write_text(json.dumps(changes))
    return path


def test_raw_incremental_passes_only_changed_extents(plugin, ctx, tmp_path):
    image = make_raw(tmp_path / "vm.img", SIZE)
    full = _full(plugin, ctx, image)
    write_at(image, 5 * MiB, os.urandom(100_000))
    write_at(image, 17 * MiB + 7, os.urandom(10))
    write_at(image, 0, bytes(4096))  # a block zeroed by the guest is a change too
    changes = _write_changes(
        tmp_path / "cbt.json",
        # Unsorted and overlapping, the way a tracker may report them.
        {str(image): [[17 * MiB, 4096], [5 * MiB, 100_000], [0, 4096], [5 * MiB + 50_000, 100]]},
    )
    sink, result = _incremental(plugin, ctx, full, [image], changes)

    (call,) = sink.calls
    assert call.extents == [Extent(0, 4096), Extent(5 * MiB, 100_000), Extent(17 * MiB, 4096)]
    assert call.parent.path == full.items[0].path
    assert call.parent.chunks == full.items[0].chunks
    assert result.warnings == []
    assert result.metadata["disks"][0]["mode"] == "incremental"
    # Only the chunks around the changes were read again.
    assert sorted({off // (4 * MiB) for off, _ in call.reads}) == [0, 1, 4]

    out = tmp_path / "out"
    request = RestoreRequest(asset=request_for(plugin, images=[str(image)]).asset, target=out)
    plugin.restore(request, MemoryRestoreSource(sink), ctx)
    assert filecmp.cmp(image, out / "vm.img", shallow=False)


def test_qcow2_incremental_passes_only_changed_extents(plugin, ctx, tmp_path):
    raw = make_raw(tmp_path / "src.raw", SIZE)
    image = make_qcow2(tmp_path / "vm.qcow2", raw)
    full = _full(plugin, ctx, image)
    subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", "write -P 0x77 20M 128k", str(image)],
        check=True,
        capture_output=True,
    )
    changes = _write_changes(tmp_path / "cbt.json", {str(image): [[20 * MiB, 128 * 1024]]})
    sink, result = _incremental(plugin, ctx, full, [image], changes)
    (call,) = sink.calls
    assert call.extents == [Extent(20 * MiB, 128 * 1024)]
    assert call.parent.path == full.items[0].path
    assert call.parent.chunks == full.items[0].chunks
    assert result.warnings == []

    out = tmp_path / "out"
    request = RestoreRequest(
        asset=request_for(plugin, images=[str(image)]).asset,
        target=out,
        options={"format": "qcow2"},
    )
    plugin.restore(request, MemoryRestoreSource(sink), ctx)
    qemu_img("compare", "-f", "qcow2", "-F", "qcow2", str(image), str(out / "vm.qcow2"))


def test_nothing_changed_passes_no_extent(plugin, ctx, tmp_path):
    image = make_raw(tmp_path / "vm.img", 8 * MiB)
    full = _full(plugin, ctx, image)
    changes = _write_changes(tmp_path / "cbt.json", {str(image): []})
    sink, _ = _incremental(plugin, ctx, full, [image], changes)
    assert sink.calls[0].extents == []
    assert sink.calls[0].reads == []
    assert sink.items[0].chunks == full.items[0].chunks


def test_without_changed_extents_an_incremental_reads_everything_and_says_so(plugin, ctx, tmp_path):
    image = make_raw(tmp_path / "vm.img", 8 * MiB)
    full = _full(plugin, ctx, image)
    sink, result = _incremental(plugin, ctx, full, [image])
    (call,) = sink.calls
    assert call.parent is None
    assert call.extents == full.calls[0].extents
    assert any("no changed_extents file" in w for w in result.warnings)
    assert result.metadata["disks"][0]["mode"] == "full"


def test_image_missing_from_the_changed_extents_file_is_read_in_full(plugin, ctx, tmp_path):
    one = make_raw(tmp_path / "one.img", 8 * MiB)
    two = make_raw(tmp_path / "two.img", 8 * MiB)
    full = RecordingSink()
    plugin.backup(request_for(plugin, images=[str(one), str(two)]), full, ctx)
    # The file names the image through a symlink: it still matches.
    (tmp_path / "link.img").symlink_to(one)
    changes = _write_changes(tmp_path / "cbt.json", {str(tmp_path / "link.img"): [[0, 512]]})
    sink, result = _incremental(plugin, ctx, full, [one, two], changes)
    assert sink.calls[0].extents == [Extent(0, 512)]
    assert sink.calls[0].parent is not None
    assert sink.calls[1].parent is None
    assert sink.calls[1].extents == full.calls[1].extents
    assert any("two.img: not listed" in w for w in result.warnings)


def test_resized_disk_is_read_in_full(plugin, ctx, tmp_path):
    image = make_raw(tmp_path / "vm.img", 8 * MiB)
    full = _full(plugin, ctx, image)
    os.truncate(image, 12 * MiB)
    changes = _write_changes(tmp_path / "cbt.json", {str(image): [[8 * MiB, 4096]]})
    sink, result = _incremental(plugin, ctx, full, [image], changes)
    assert sink.calls[0].parent is None
    assert sink.items[0].size == 12 * MiB
    assert any("resized" in w for w in result.warnings)


def test_incremental_without_parent_is_a_full_with_a_warning(plugin, ctx, tmp_path):
    image = make_raw(tmp_path / "vm.img", 8 * MiB)
    changes = _write_changes(tmp_path / "cbt.json", {str(image): [[0, 512]]})
    sink = RecordingSink()
    request = request_for(
        plugin, BackupLevel.INCREMENTAL, images=[str(image)], changed_extents=str(changes)
    )
    result = plugin.backup(request, sink, ctx)
    assert sink.calls[0].parent is None
    assert sum(e.length for e in sink.calls[0].extents) > 512
    assert any("no previous recovery point" in w for w in result.warnings)
