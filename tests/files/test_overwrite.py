"""Overwrite policies, restore into an existing tree and in-place restore."""

from __future__ import annotations

import os

from .helpers import assert_same_tree, rel, run_backup, run_restore

NS = 10**9


def prepare(plugin, ctx, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a", "b", "c"):
        (src / name).write_text(f"backed up {name}")
        os.utime(src / name, ns=(1000 * NS, 1000 * NS))
    sink, _ = run_backup(plugin, ctx, [src])
    out = tmp_path / "out"
    copy = out / rel(src).decode()
    copy.mkdir(parents=True)
    (copy / "a").write_text("existing newer a")
    os.utime(copy / "a", ns=(2000 * NS, 2000 * NS))
    (copy / "b").write_text("existing older b")
    os.utime(copy / "b", ns=(10 * NS, 10 * NS))
    return src, sink, out, copy


def test_never_keeps_existing_files(plugin, ctx, tmp_path):
    src, sink, out, copy = prepare(plugin, ctx, tmp_path)
    result = run_restore(plugin, ctx, sink, out, overwrite="never")
    assert (copy / "a").read_text() == "existing newer a"
    assert (copy / "b").read_text() == "existing older b"
    assert (copy / "c").read_text() == "backed up c"
    assert sorted(result.skipped) == [
        rel(copy / "a")[len(rel(out)) + 1 :].decode(),
        rel(src / "b").decode(),
    ] or sorted(result.skipped) == sorted([rel(src / "a").decode(), rel(src / "b").decode()])
    assert result.failed == []


def test_older_replaces_only_older_files(plugin, ctx, tmp_path):
    src, sink, out, copy = prepare(plugin, ctx, tmp_path)
    result = run_restore(plugin, ctx, sink, out, overwrite="older")
    assert (copy / "a").read_text() == "existing newer a"
    assert (copy / "b").read_text() == "backed up b"
    assert result.skipped == [rel(src / "a").decode()]


def test_always_replaces(plugin, ctx, tmp_path):
    src, sink, out, copy = prepare(plugin, ctx, tmp_path)
    result = run_restore(plugin, ctx, sink, out, overwrite="always")
    assert result.skipped == [] and result.failed == []
    assert_same_tree(src, copy)


def test_a_folder_in_the_way_is_not_replaced_by_a_file(plugin, ctx, tmp_path):
    _, sink, out, copy = prepare(plugin, ctx, tmp_path)
    (copy / "c").mkdir()
    (copy / "c" / "inside").write_text("keep me")
    result = run_restore(plugin, ctx, sink, out, overwrite="always")
    assert (copy / "c" / "inside").read_text() == "keep me"
    assert "folder is in the way" in result.failed[0]


def test_in_place_restore_into_the_original_tree(plugin, ctx, tmp_path):
    original = tmp_path / "original"
    (original / "sub").mkdir(parents=True)
    (original / "sub" / "doc").write_text("version 1")
    (original / "kept").write_text("unchanged")
    os.symlink("sub/doc", original / "link")
    reference = tmp_path / "reference"
    sink, _ = run_backup(plugin, ctx, [original])
    run_restore(plugin, ctx, sink, reference)

    (original / "sub" / "doc").write_text("version 2, later")
    (original / "kept").unlink()
    (original / "link").unlink()
    (original / "new-since").write_text("not in the backup")

    result = run_restore(plugin, ctx, sink, None, in_place=True, overwrite="never")
    assert result.failed == []
    assert (original / "sub" / "doc").read_text() == "version 2, later"
    assert (original / "kept").read_text() == "unchanged"
    assert os.readlink(original / "link") == "sub/doc"
    assert rel(original / "sub" / "doc").decode() in result.skipped

    result = run_restore(plugin, ctx, sink, None, in_place=True, overwrite="always")
    assert result.failed == []
    (original / "new-since").unlink()  # restore adds and replaces; it never deletes
    # Compared before reading anything here: a read would move the files' atime.
    assert_same_tree(reference / rel(original).decode(), original)
    assert (original / "sub" / "doc").read_text() == "version 1"


def test_in_place_restore_leaves_parent_folders_alone(plugin, ctx, tmp_path):
    original = tmp_path / "original"
    original.mkdir()
    (original / "f").write_text("x")
    sink, _ = run_backup(plugin, ctx, [original])
    os.chmod(tmp_path, 0o711)
    os.utime(tmp_path, ns=(5 * NS, 5 * NS))
    result = run_restore(plugin, ctx, sink, None, in_place=True, overwrite="always")
    assert result.failed == []
    # tmp_path is above the job path, stored only as a parent: never changed in place.
    st = os.stat(tmp_path)
    assert (st.st_mode & 0o7777, st.st_mtime_ns) == (0o711, 5 * NS)
