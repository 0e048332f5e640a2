"""Bad input gives a clear error and loses nothing."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

from tapir.appliance.plugin_api import (
    BackupLevel,
    BackupRequest,
    ChunkCorrupt,
    ConnectionFailed,
    EndpointInfo,
    PluginError,
    RestoreRequest,
    RunCanceled,
)
from tapir.appliance.plugin_api.libnbd import _load
from tapir.appliance.plugin_api.testing.memory_sink import MemoryRestoreSource

from .helpers import (
    MiB,
    RecordingSink,
    blank_asset,
    make_qcow2,
    make_raw,
    qemu_nbd_children,
    request_for,
)

NOBODY = 65534


def _backup(plugin, ctx, sink=None, level=BackupLevel.FULL, **options):
    sink = sink if sink is not None else RecordingSink()
    # Options that do not parse have no asset: the plugin must refuse them anyway.
    asset = blank_asset() if "images" not in options else request_for(plugin, **options).asset
    request = BackupRequest(asset=asset, level=level, options=options)
    return plugin.backup(request, sink, ctx), sink


def test_unreadable_image_is_a_clear_error(plugin, ctx):
    # Root reads anything: as root the attempt is made as nobody, in a folder
    # nobody may enter (pytest's own tmp_path is private to root).
    with tempfile.TemporaryDirectory(prefix="tapir-imagefile-") as folder:
        os.chmod(folder, 0o755)
        good = make_raw(Path(folder) / "good.img", 4 * MiB)
        image = make_raw(Path(folder) / "secret.img", 4 * MiB)
        good.chmod(0o644)
        image.chmod(0o600)
        sink = RecordingSink()
        request = request_for(plugin, images=[str(good), str(image)])
        as_root = os.geteuid() == 0
        if as_root:
            os.seteuid(NOBODY)
        else:
            image.chmod(0)
        try:
            with pytest.raises(
                PluginError, match=r"cannot read disk image .*secret\.img: Permission denied"
            ):
                plugin.backup(request, sink, ctx)
        finally:
            if as_root:
                os.seteuid(0)
    # Every image is checked before any data is handed over.
    assert sink.calls == []


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("missing.img", "No such file"),
        ("folder", "neither a regular file nor a block device"),
    ],
)
def test_missing_or_odd_image_is_a_clear_error(plugin, ctx, tmp_path, name, match):
    (tmp_path / "folder").mkdir()
    with pytest.raises(PluginError, match=match):
        _backup(plugin, ctx, images=[str(tmp_path / name)])


def test_corrupt_qcow2_is_a_clear_error(plugin, ctx, tmp_path):
    bad = tmp_path / "bad.qcow2"
    bad.write_bytes(b"QFI\xfb" + os.urandom(1020))
    with pytest.raises(PluginError, match=r"reading the header of .*bad\.qcow2 failed"):
        _backup(plugin, ctx, images=[str(bad)])


def test_foreign_container_is_refused_unless_forced_raw(plugin, ctx, tmp_path):
    vmdk = tmp_path / "disk.vmdk"
    vmdk.write_bytes(b"KDMV" + bytes(1020))
    with pytest.raises(PluginError, match="looks like a vmdk file"):
        _backup(plugin, ctx, images=[str(vmdk)])
    _, sink = _backup(plugin, ctx, images=[str(vmdk)], image_format="raw")
    assert sink.items[0].extra["format"] == "raw"


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({}, "images must be a list"),
        ({"images": "/x.img"}, "images must be a list"),
        ({"images": []}, "images is empty"),
        ({"images": ["relative.img"]}, "must be an absolute path"),
        ({"images": ["/a.img", "/a.img"]}, "same file more than once"),
        ({"images": ["/a.img"], "image_format": "vmdk"}, "image_format must be"),
    ],
)
def test_bad_options_are_clear_errors(plugin, ctx, options, match):
    with pytest.raises(PluginError, match=match):
        _backup(plugin, ctx, **options)


def _changed(tmp_path, content) -> Path:
    path = tmp_path / "cbt.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def _parent_of(plugin, ctx, image):
    _, full = _backup(plugin, ctx, images=[str(image)])
    return full.as_parent()


def test_changed_extent_past_the_end_is_a_clear_error(plugin, ctx, tmp_path):
    image = make_raw(tmp_path / "vm.img", 8 * MiB)
    parent = _parent_of(plugin, ctx, image)
    changes = _changed(tmp_path, {str(image): [[0, 512], [8 * MiB - 512, 1024]]})
    sink = RecordingSink(parent=parent)
    with pytest.raises(PluginError, match=r"\[8388096, 1024\].*past the end of the disk"):
        _backup(
            plugin,
            ctx,
            sink,
            BackupLevel.INCREMENTAL,
            images=[str(image)],
            changed_extents=str(changes),
        )
    assert sink.calls == []


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "must hold an object"),
        ({"/x": {"0": 1}}, "must map to a list"),
        ({"/x": [[0, -1]]}, "expected \\[offset, length\\]"),
        ({"/x": [[0, 1, 2]]}, "expected \\[offset, length\\]"),
        ({"/x": [["0", 1]]}, "expected \\[offset, length\\]"),
        ({"/x": [[0.5, 1]]}, "expected \\[offset, length\\]"),
    ],
)
def test_malformed_changed_extents_file_is_a_clear_error(plugin, ctx, tmp_path, content, match):
    image = make_raw(tmp_path / "vm.img", 4 * MiB)
    parent = _parent_of(plugin, ctx, image)
    changes = _changed(tmp_path, content)
    sink = RecordingSink(parent=parent)
    with pytest.raises(PluginError, match=match):
        _backup(
            plugin,
            ctx,
            sink,
            BackupLevel.INCREMENTAL,
            images=[str(image)],
            changed_extents=str(changes),
        )
    assert sink.calls == []


def test_missing_changed_extents_file_is_a_clear_error(plugin, ctx, tmp_path):
    image = make_raw(tmp_path / "vm.img", 4 * MiB)
    sink = RecordingSink(parent=_parent_of(plugin, ctx, image))
    with pytest.raises(PluginError, match="cannot read changed extents file"):
        _backup(
            plugin,
            ctx,
            sink,
            BackupLevel.INCREMENTAL,
            images=[str(image)],
            changed_extents=str(tmp_path / "nope.json"),
        )


def test_backup_of_another_asset_is_refused(plugin, ctx, tmp_path):
    one = make_raw(tmp_path / "one.img", MiB)
    two = make_raw(tmp_path / "two.img", MiB)
    request = request_for(plugin, images=[str(one)])
    request.options = {"images": [str(two)]}
    with pytest.raises(PluginError, match="is not the image set"):
        plugin.backup(request, RecordingSink(), ctx)


def test_cancel_stops_the_backup_and_the_qemu_nbd_server(plugin, tmp_path, ctx):
    image = make_qcow2(tmp_path / "vm.qcow2", make_raw(tmp_path / "src.raw", 12 * MiB))
    calls = 0

    def check_canceled():
        nonlocal calls
        calls += 1
        if calls > 2:
            raise RunCanceled("canceled by the operator")

    ctx.check_canceled = check_canceled
    with pytest.raises(RunCanceled):
        _backup(plugin, ctx, images=[str(image)])
    assert qemu_nbd_children() == []


def _backed_up(plugin, ctx, tmp_path, size=6 * MiB):
    image = make_raw(tmp_path / "vm.img", size)
    _, sink = _backup(plugin, ctx, images=[str(image)])
    return image, sink


def test_restore_refuses_to_overwrite_unless_always(plugin, ctx, tmp_path):
    image, sink = _backed_up(plugin, ctx, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "vm.img").write_bytes(b"precious")
    for overwrite in ("never", "older"):
        request = RestoreRequest(asset=blank_asset(), target=out, overwrite=overwrite)
        with pytest.raises(PluginError, match="refusing to overwrite"):
            plugin.restore(request, MemoryRestoreSource(sink), ctx)
        assert (out / "vm.img").read_bytes() == b"precious"
    request = RestoreRequest(asset=blank_asset(), target=out, overwrite="always")
    plugin.restore(request, MemoryRestoreSource(sink), ctx)
    assert (out / "vm.img").read_bytes() == image.read_bytes()


def test_failed_restore_leaves_no_partial_file_and_keeps_the_old_one(plugin, ctx, tmp_path):
    _, sink = _backed_up(plugin, ctx, tmp_path)
    damaged = MemoryRestoreSource(sink)
    # The last stored chunk: the restore has written earlier data when it fails.
    victim = [ref.id for ref in sink.items[0].chunks if ref.id is not None][-1]
    damaged.corrupt_chunk(victim)

    out = tmp_path / "out"
    out.mkdir()
    (out / "vm.img").write_bytes(b"precious")
    request = RestoreRequest(asset=blank_asset(), target=out, overwrite="always")
    with pytest.raises(ChunkCorrupt):
        plugin.restore(request, damaged, ctx)
    assert sorted(p.name for p in out.iterdir()) == ["vm.img"]
    assert (out / "vm.img").read_bytes() == b"precious"
    # The same recovery point without damage restores fine afterwards.
    plugin.restore(request, MemoryRestoreSource(sink), ctx)


def test_restore_to_a_directory_or_bad_format_is_refused(plugin, ctx, tmp_path):
    _, sink = _backed_up(plugin, ctx, tmp_path, size=MiB)
    out = tmp_path / "out"
    (out / "vm.img").mkdir(parents=True)
    request = RestoreRequest(asset=blank_asset(), target=out, overwrite="always")
    with pytest.raises(PluginError, match="it is a directory"):
        plugin.restore(request, MemoryRestoreSource(sink), ctx)
    request = RestoreRequest(asset=blank_asset(), target=out, options={"format": "vmdk"})
    with pytest.raises(PluginError, match="format must be raw or qcow2"):
        plugin.restore(request, MemoryRestoreSource(sink), ctx)
    request = RestoreRequest(asset=blank_asset(), target=out, paths=[b"disks/9-none"])
    with pytest.raises(PluginError, match="no disk in the recovery point"):
        plugin.restore(request, MemoryRestoreSource(sink), ctx)


def test_test_connection_checks_every_image(plugin, ctx, tmp_path):
    good = make_raw(tmp_path / "good.img", MiB)
    qcow = make_qcow2(tmp_path / "good.qcow2", good)
    endpoint = EndpointInfo("lab", "imagefile", "local", {"images": [str(good), str(qcow)]})
    plugin.test_connection(endpoint, ctx)
    broken = EndpointInfo(
        "lab", "imagefile", "local", {"images": [str(good), str(tmp_path / "gone.img")]}
    )
    with pytest.raises(ConnectionFailed, match=r"gone\.img"):
        plugin.test_connection(broken, ctx)
    with pytest.raises(ConnectionFailed, match="images"):
        plugin.test_connection(EndpointInfo("lab", "imagefile", "local", {}), ctx)


def test_missing_libnbd_bindings_are_a_clear_error(tmp_path):
    with pytest.raises(PluginError, match=r"reading qcow2 images needs .* python3-libnbd"):
        _load.__wrapped__((tmp_path,), "reading qcow2 images", "python3-libnbd")
