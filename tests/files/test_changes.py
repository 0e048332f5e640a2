"""A live file system: files that change, vanish or are replaced while the backup runs."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tapir.appliance.plugin_api import BackupRequest, Item, PluginError, RunCanceled
from tapir.appliance.plugin_api.testing.memory_sink import MemoryFileWriter, MemorySink

from .helpers import ASSET, rel, run_backup


class HookedSink(MemorySink):
    """A MemorySink that runs a callback when an item arrives (a deterministic race)."""

    def __init__(self, hooks: dict[bytes, Callable[[], None]]) -> None:
        super().__init__()
        self.hooks = hooks

    def _fire(self, path: bytes) -> None:
        hook = self.hooks.pop(path, None)
        if hook is not None:
            hook()

    def add(self, item: Item) -> None:
        super().add(item)
        self._fire(item.path)

    def open_file(self, item: Item) -> MemoryFileWriter:
        writer = super().open_file(item)
        self._fire(item.path)
        return writer


class WriteHookSink(MemorySink):
    """Calls ``on_write`` after the first block of ``path`` was handed over."""

    def __init__(self, path: bytes, on_write: Callable[[], None]) -> None:
        super().__init__()
        self.path = path
        self.on_write = on_write

    def open_file(self, item: Item) -> MemoryFileWriter:
        writer = super().open_file(item)
        if item.path == self.path:
            original = writer.write

            def write(data: bytes) -> None:
                original(data)
                if self.on_write is not None:
                    hook, self.on_write = self.on_write, None
                    hook()

            writer.write = write  # type: ignore[method-assign]
        return writer


def test_file_growing_while_read_is_flagged(plugin, ctx, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "log").write_bytes(b"a" * 3_000_000)

    def append() -> None:
        with open(src / "log", "ab") as f:
            f.write(b"more lines\n")

    sink, _ = run_backup(plugin, ctx, [src], sink=WriteHookSink(rel(src / "log"), append))
    item = sink.item(rel(src / "log"))
    assert item.flags == ["changed-while-read"]
    assert "changed while it was read" in sink.warned(rel(src / "log"))[0]
    assert item.size == 3_000_000 == item.stored_size


def test_file_shrinking_while_read_keeps_its_recorded_size(plugin, ctx, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"b" * 3_000_000)
    sink, _ = run_backup(
        plugin, ctx, [src], sink=WriteHookSink(rel(src / "f"), lambda: os.truncate(src / "f", 10))
    )
    item = sink.item(rel(src / "f"))
    assert item.flags == ["changed-while-read"]
    assert item.stored_size == item.size == 3_000_000
    assert item.chunks[-1].id is None  # the missing tail is a hole, never invented data


def test_vanished_file_warns_and_the_run_goes_on(plugin, ctx, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a", "b", "c"):
        (src / name).write_text(name)
    sink = HookedSink({rel(src / "a"): lambda: (src / "b").unlink()})
    sink, _ = run_backup(plugin, ctx, [src], sink=sink)
    paths = {i.path for i in sink.items}
    assert rel(src / "b") not in paths
    assert {rel(src / "a"), rel(src / "c")} <= paths
    assert "vanished" in sink.warned(rel(src / "b"))[0]


def test_file_replaced_by_a_fifo_is_not_waited_on(plugin, ctx, tmp_path):
    # Opening a FIFO for reading blocks until a writer comes: the reader opens with
    # O_NONBLOCK and checks the type, so a swapped entry is reported, not hung on.
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("a")
    (src / "b").write_text("b")
    (src / "c").write_text("c")

    def swap() -> None:
        (src / "b").unlink()
        os.mkfifo(src / "b")

    sink, _ = run_backup(plugin, ctx, [src], sink=HookedSink({rel(src / "a"): swap}))
    assert "replaced" in sink.warned(rel(src / "b"))[0]
    assert rel(src / "c") in {i.path for i in sink.items}


def test_file_replaced_by_a_symlink_is_not_followed(plugin, ctx, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("a")
    (src / "b").write_text("b")
    (tmp_path / "secret").write_text("outside the job")

    def swap() -> None:
        (src / "b").unlink()
        os.symlink(tmp_path / "secret", src / "b")

    sink, _ = run_backup(plugin, ctx, [src], sink=HookedSink({rel(src / "a"): swap}))
    assert rel(src / "b") not in {i.path for i in sink.items}
    assert "symbolic link" in sink.warned(rel(src / "b"))[0]
    assert not any(b"outside the job" in data for data in sink.chunks.values())


def test_folder_that_vanishes_before_listing_warns(plugin, ctx, tmp_path):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_text("f")
    (src / "z").write_text("z")

    def remove() -> None:
        (src / "d" / "f").unlink()
        (src / "d").rmdir()

    sink, _ = run_backup(plugin, ctx, [src], sink=HookedSink({rel(src / "d"): remove}))
    assert "folder not read" in sink.warned(rel(src / "d"))[0]
    assert rel(src / "z") in {i.path for i in sink.items}


def test_missing_job_path_warns_and_all_missing_fails(plugin, ctx, tmp_path):
    (tmp_path / "here").mkdir()
    sink, _ = run_backup(plugin, ctx, [tmp_path / "here", tmp_path / "not-there"])
    assert "skipped" in sink.warned(rel(tmp_path / "not-there"))[0]
    with pytest.raises(PluginError, match="none of the job's paths"):
        run_backup(plugin, ctx, [tmp_path / "not-there"])


def test_cancel_stops_the_backup(plugin, ctx, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(10):
        (src / f"f{i}").write_text("x")
    calls = []

    def check() -> None:
        calls.append(1)
        if len(calls) > 3:
            raise RunCanceled("canceled by the operator")

    ctx.check_canceled = check
    sink = MemorySink()
    with pytest.raises(RunCanceled):
        plugin.backup(BackupRequest(ASSET, "full", {"paths": [str(src)]}), sink, ctx)
    assert len(sink.items) < 10


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "at least one"),
        ({"paths": ["relative/path"]}, "not absolute"),
        ({"paths": ["/x"], "colour": "red"}, "unknown option"),
        ({"paths": ["/x"], "one_file_system": "maybe"}, "true or false"),
        ({"paths": ["/x"], "exclude": [""]}, "empty"),
        ({"paths": ["/x"], "include": ["/x/[oops"]}, "malformed"),
        ({"paths": 5}, "must be a list"),
    ],
)
def test_bad_options_are_refused_before_anything_is_stored(plugin, ctx, options, message):
    sink = MemorySink()
    with pytest.raises(PluginError, match=message):
        plugin.backup(BackupRequest(ASSET, "full", options), sink, ctx)
    assert sink.items == []


def test_progress_and_byte_counts(plugin, ctx, tmp_path, progress):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"z" * 123_456)
    _sink, result = run_backup(plugin, ctx, [src])
    assert result.metadata["bytes_read"] == 123_456
    # The engine's sink counts bytes and items; a plugin that counted too would
    # double every figure the operator sees.
    assert progress.bytes_done == 0
    assert progress.items_done == 0
    assert any(Path(c) == src / "f" for c in progress.current)
