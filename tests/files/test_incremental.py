"""Incrementals read only what changed and still restore the whole tree."""

from __future__ import annotations

import os

from tapir.appliance.plugin_api import ChunkRef
from tapir.appliance.plugin_api.testing.memory_sink import MemorySink

from .helpers import assert_same_tree, rel, run_backup, run_restore


def test_incremental_opens_only_changed_files(plugin, ctx, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for name in ("same-1", "same-2", "edited", "touched", "sub/same-3"):
        (src / name).write_bytes(os.urandom(70_000))
    (src / "to-remove").write_text("gone soon")
    full, _ = run_backup(plugin, ctx, [src])
    assert len(full.opened) == 6

    (src / "edited").write_bytes(b"new content")
    os.utime(src / "touched")  # same data, new mtime: must be read again
    (src / "to-remove").unlink()
    (src / "sub" / "added").write_text("brand new")
    incr, result = run_backup(plugin, ctx, [src], sink=MemorySink(parent=full.as_parent()))

    assert sorted(incr.opened) == sorted(
        [rel(src / "edited"), rel(src / "touched"), rel(src / "sub" / "added")]
    )
    assert result.metadata["files_reused"] == 3
    assert incr.item(rel(src / "same-1")).chunks == full.item(rel(src / "same-1")).chunks
    assert not any(i.path == rel(src / "to-remove") for i in incr.items)

    # The incremental is a complete index: restoring it alone gives today's tree.
    out = tmp_path / "out"
    restored = run_restore(plugin, ctx, incr, out)
    assert restored.failed == []
    assert_same_tree(src, out / rel(src).decode())


def test_a_file_flagged_in_the_parent_is_read_again(plugin, ctx, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("data")
    full, _ = run_backup(plugin, ctx, [src])
    full.item(rel(src / "f")).flags.append("changed-while-read")
    incr, _ = run_backup(plugin, ctx, [src], sink=MemorySink(parent=full.as_parent()))
    assert incr.opened == [rel(src / "f")]


def test_a_replaced_file_with_the_same_times_is_read_again(plugin, ctx, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("old!")
    full, _ = run_backup(plugin, ctx, [src])
    st = os.stat(src / "f")
    (src / "g").write_text("new!")
    os.utime(src / "g", ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(src / "g", src / "f")  # same size and mtime, another inode
    incr, _ = run_backup(plugin, ctx, [src], sink=MemorySink(parent=full.as_parent()))
    assert incr.opened == [rel(src / "f")]
    assert incr.file_bytes(rel(src / "f")) == b"new!"


def test_parent_chunks_are_referenced_not_copied(plugin, ctx, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"x" * 200_000)
    full, _ = run_backup(plugin, ctx, [src])
    incr, _ = run_backup(plugin, ctx, [src], sink=MemorySink(parent=full.as_parent()))
    chunks = incr.item(rel(src / "f")).chunks
    assert all(isinstance(c, ChunkRef) and c.id in full.chunks for c in chunks)
    assert incr.opened == []
