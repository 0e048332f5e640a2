"""The plugin as the appliance sees it: loading, options, discovery, progress, extents."""

from __future__ import annotations

import os

import pytest

from tapir.appliance.plugin_api import EndpointInfo, Extent, HypervisorPlugin, PluginError
from tapir.appliance.plugin_manager import load_plugins
from tapir.plugins.imagefile import plugin as plugin_module
from tapir.plugins.imagefile.extents import (
    merge_extents,
    qcow2_allocated_extents,
    raw_allocated_extents,
)
from tapir.plugins.imagefile.restore import data_runs

from .helpers import MiB, RecordingSink, make_qcow2, make_raw, request_for, write_at


def test_loads_through_the_tapir_entry_point():
    registry = load_plugins()
    assert "imagefile" in registry.sources
    source = registry.sources["imagefile"]
    assert isinstance(source, HypervisorPlugin)
    assert source.capabilities() == {"incremental"}
    assert {o.name for o in source.job_options()} >= {"images", "changed_extents", "name"}
    loaded = {p.name: p for p in registry.loaded}
    assert loaded["imagefile"].version == plugin_module.__version__
    assert loaded["imagefile"].hooks == ["tapir_hypervisor_plugins"]


def test_discover_one_vm_per_image_set(plugin, ctx, tmp_path):
    one, two = str(tmp_path / "web-root.qcow2"), str(tmp_path / "web-data.img")
    endpoint = EndpointInfo("lab", "imagefile", "local", {"images": [one, two]})
    (asset,) = plugin.discover(endpoint, ctx)
    assert asset.kind == "vm"
    assert asset.name == "web-root"
    assert asset.metadata["images"] == [one, two]
    assert plugin.discover(None, ctx) == []


def test_job_assets_come_from_the_job_options(plugin, ctx, tmp_path):
    one, two = str(tmp_path / "web-root.qcow2"), str(tmp_path / "web-data.img")
    endpoint = EndpointInfo("lab", "imagefile", "local", {"images": [one, two]})
    (from_endpoint,) = plugin.discover(endpoint, ctx)
    (asset,) = plugin.job_assets(None, {"images": [one, two], "name": "web"}, ctx)
    assert asset.name == "web"
    # The same images make the same machine, whether named by a job or an endpoint.
    assert asset.external_id == from_endpoint.external_id
    (other,) = plugin.job_assets(None, {"images": [two]}, ctx)
    assert other.name == "web-data" and other.external_id != asset.external_id
    with pytest.raises(PluginError):
        plugin.job_assets(None, {}, ctx)


class _Progress:
    def __init__(self):
        self.total = None
        self.done = 0
        self.items = 0

    def set_total(self, bytes_total=None, items_total=None):
        self.total = (bytes_total, items_total)

    def advance(self, bytes_done=0, items_done=0, current=None):
        self.done += bytes_done
        self.items += items_done


def test_progress_names_the_disk_and_leaves_counting_to_the_sink(plugin, ctx, tmp_path):
    image = make_raw(tmp_path / "vm.img", 10 * MiB)
    ctx.progress = _Progress()
    sink = RecordingSink()
    result = plugin.backup(request_for(plugin, images=[str(image)]), sink, ctx)
    # The sink counts every span of the disk, so the total is the virtual size.
    assert ctx.progress.total == (10 * MiB, 1)
    assert ctx.progress.done == 0
    assert ctx.progress.items == 0
    assert result.metadata["disks"][0]["bytes_read"] == sum(n for _, n in sink.calls[0].reads)


def test_an_image_written_during_the_backup_gives_a_warning(plugin, ctx, tmp_path):
    image = make_raw(tmp_path / "vm.img", 4 * MiB)

    class GuestStillRunning(RecordingSink):
        def add_disk(self, item, read, extents=None, parent=None):
            write_at(image, 4096, b"the guest writes")
            os.utime(image, ns=(1, 1))
            super().add_disk(item, read, extents, parent)

    result = plugin.backup(request_for(plugin, images=[str(image)]), GuestStillRunning(), ctx)
    assert any("changed while it was read" in w for w in result.warnings)


def test_merge_extents_sorts_joins_and_drops_empty():
    got = merge_extents([Extent(10, 5), Extent(0, 4), Extent(4, 2), Extent(12, 10), Extent(30, 0)])
    assert got == [Extent(0, 6), Extent(10, 12)]


def test_raw_allocated_extents_follow_the_holes(tmp_path):
    path = tmp_path / "sparse.img"
    with open(path, "wb") as f:
        f.truncate(16 * MiB)
    write_at(path, MiB, b"x" * 4096)
    write_at(path, 8 * MiB, b"y" * (2 * MiB))
    fd = os.open(path, os.O_RDONLY)
    try:
        assert raw_allocated_extents(fd, 16 * MiB) == [
            Extent(MiB, 4096),
            Extent(8 * MiB, 2 * MiB),
        ]
    finally:
        os.close(fd)


def test_qcow2_allocated_extents_skip_unallocated_and_zero_clusters(tmp_path):
    raw = tmp_path / "src.raw"
    with open(raw, "wb") as f:
        f.truncate(8 * MiB)
    write_at(raw, 2 * MiB, b"z" * 65536)
    write_at(raw, 5 * MiB, bytes(MiB))
    image = make_qcow2(tmp_path / "x.qcow2", raw)
    assert qcow2_allocated_extents(image, 8 * MiB) == [Extent(2 * MiB, 65536)]


def test_data_runs_find_non_zero_blocks():
    block = 65536
    data = bytearray(8 * block)
    data[block + 5] = 1
    data[2 * block] = 1
    data[7 * block + block - 1] = 1
    assert data_runs(bytes(data)) == [(block, 3 * block), (7 * block, 8 * block)]
    assert data_runs(bytes(3 * block)) == []
    assert data_runs(b"\0" * 10 + b"a") == [(0, 11)]
