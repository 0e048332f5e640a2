"""Include / exclude patterns, CACHEDIR.TAG and one_file_system."""

from __future__ import annotations

import subprocess

import pytest

from tapir.appliance.plugin_api import PluginError
from tapir.plugins.files.selection import Pattern, Selection, Verdict
from tapir.plugins.files.walker import CACHEDIR_SIGNATURE

from .helpers import rel, run_backup


def selected(selection: Selection, path: bytes) -> bool:
    verdict = Verdict()
    parts = path.strip(b"/").split(b"/")
    for depth in range(1, len(parts) + 1):
        verdict = selection.judge(b"/" + b"/".join(parts[:depth]), verdict)
    return verdict.selected


@pytest.mark.parametrize(
    ("pattern", "path", "match"),
    [
        ("*.tmp", b"/srv/a/b.tmp", True),
        ("*.tmp", b"/srv/a/b.tmpx", False),
        ("/srv/*.tmp", b"/srv/a/b.tmp", False),
        ("/srv/**/*.tmp", b"/srv/a/b.tmp", True),
        ("/srv/**/*.tmp", b"/srv/b.tmp", True),
        ("/srv/**", b"/srv/x/y", True),
        ("/srv/?.log", b"/srv/a.log", True),
        ("/srv/?.log", b"/srv/ab.log", False),
        ("/srv/[ab].log", b"/srv/b.log", True),
        ("/srv/[!ab].log", b"/srv/c.log", True),
        ("/srv/[!ab].log", b"/srv/a.log", False),
        ("cache", b"/home/u/cache", True),
        ("/srv/data/", b"/srv/data", True),
        ("/srv/caf\udce9", b"/srv/caf\xe9", True),  # non-UTF-8 names via surrogateescape
    ],
)
def test_glob_matching(pattern, path, match):
    assert Pattern.compile(pattern).matches(path) is match


def test_malformed_pattern_is_refused():
    with pytest.raises(PluginError, match="malformed"):
        Pattern.compile("/srv/[abc")


def test_exclude_wins_unless_an_include_is_more_specific():
    sel = Selection(include=("/srv/keep.tmp", "*.c"), exclude=("*.tmp", "/srv/build"))
    assert not selected(sel, b"/srv/other.tmp")
    assert selected(sel, b"/srv/keep.tmp")  # longer literal text than "*.tmp"
    assert not selected(sel, b"/srv/build/main.c")  # "*.c" is less specific than /srv/build
    assert selected(sel, b"/srv/main.c")
    tie = Selection(include=("/srv/a",), exclude=("/srv/a",))
    assert not selected(tie, b"/srv/a")


def test_excluded_folder_is_walked_only_for_an_include_inside_it():
    sel = Selection(include=("/srv/cache/keep/**", "*.conf"), exclude=("/srv/cache", "/srv/tmp"))
    assert sel.walk_excluded(b"/srv/cache")
    assert not sel.walk_excluded(b"/srv/tmp")


def test_backup_honours_patterns(plugin, ctx, tmp_path):
    src = tmp_path / "src"
    for d in ("cache/keep", "cache/drop", "logs"):
        (src / d).mkdir(parents=True)
    for f in (
        "a.txt",
        "b.tmp",
        "keep.tmp",
        "logs/x.log",
        "cache/keep/k",
        "cache/drop/d",
        "cache/c",
    ):
        (src / f).write_text(f)
    sink, _ = run_backup(
        plugin,
        ctx,
        [src],
        exclude=["*.tmp", f"{src}/cache", "logs"],
        include=[f"{src}/keep.tmp", f"{src}/cache/keep"],
    )
    stored = {i.path for i in sink.items}
    base = rel(src)
    assert {base + b"/a.txt", base + b"/keep.tmp", base + b"/cache/keep/k"} <= stored
    for gone in (b"/b.tmp", b"/logs", b"/logs/x.log", b"/cache/drop", b"/cache/c"):
        assert base + gone not in stored
    # The excluded folder is stored only as the parent of what was taken back.
    assert sink.item(base + b"/cache").extra == {"scaffold": True}
    assert sink.item(base + b"/cache/keep").extra == {}


def test_cachedir_tag_keeps_the_tag_and_drops_the_rest(plugin, ctx, tmp_path):
    src = tmp_path / "src"
    (src / "cache" / "deep").mkdir(parents=True)
    (src / "cache" / "CACHEDIR.TAG").write_bytes(CACHEDIR_SIGNATURE + b"\n# a cache\n")
    (src / "cache" / "blob").write_text("cached")
    (src / "fake").mkdir()
    (src / "fake" / "CACHEDIR.TAG").write_text("not a real tag")
    (src / "fake" / "data").write_text("kept")
    sink, _ = run_backup(plugin, ctx, [src])
    stored = {i.path for i in sink.items}
    base = rel(src)
    assert base + b"/cache" in stored and base + b"/cache/CACHEDIR.TAG" in stored
    assert base + b"/cache/blob" not in stored and base + b"/cache/deep" not in stored
    assert base + b"/fake/data" in stored

    sink, _ = run_backup(plugin, ctx, [src], exclude_caches=False)
    assert base + b"/cache/blob" in {i.path for i in sink.items}


@pytest.mark.root
def test_one_file_system_stops_at_a_mount_point(plugin, ctx, tmp_path):
    src = tmp_path / "src"
    (src / "mnt").mkdir(parents=True)
    (src / "here").write_text("same fs")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tapir-test", src / "mnt"], check=True)
    try:
        (src / "mnt" / "other-fs").write_text("another file system")
        sink, _ = run_backup(plugin, ctx, [src], one_file_system=True)
        stored = {i.path for i in sink.items}
        assert rel(src / "here") in stored
        assert rel(src / "mnt") in stored  # the mount point itself, empty
        assert rel(src / "mnt" / "other-fs") not in stored

        sink, _ = run_backup(plugin, ctx, [src])
        assert rel(src / "mnt" / "other-fs") in {i.path for i in sink.items}
    finally:
        subprocess.run(["umount", src / "mnt"], check=True)
