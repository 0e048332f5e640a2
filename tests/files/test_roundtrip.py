"""Full backup of a real tree into a MemorySink, restored into a new folder, compared."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tapir.appliance.plugin_api import ChunkRef, ItemKind

from .helpers import assert_same_tree, rel, run_backup, run_restore

OLD_NS = 978_307_200_000_000_000  # 2001-01-01
MIB = 1 << 20


def make_sparse(path: Path, size: int, data_at: list[int]) -> None:
    with open(path, "wb") as f:
        for offset in data_at:
            f.seek(offset)
            f.write(b"D" * 4096)
        f.truncate(size)


def build_tree(src: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src.mkdir()
    (src / "empty").write_bytes(b"")
    (src / "日本語 ünïcode.txt").write_text("unicode name\n")
    os.mkdir(os.fsencode(src) + b"/caf\xe9-latin1")
    with open(os.fsencode(src) + b"/caf\xe9-latin1/n\xff\xfeon-utf8", "wb") as f:
        f.write(b"\x00\x01 binary \xff" * 1000)
    deep = src / "deep"
    for level in range(40):
        deep = deep / f"level-{level:02d}-abcdefghij"
    deep.mkdir(parents=True)
    (deep / "bottom.txt").write_text("at the bottom\n")
    big = os.urandom(300_000)
    (src / "random.bin").write_bytes(big)
    make_sparse(src / "sparse", 8 * MIB, [0, 4 * MIB])  # hole in the middle and at the end
    (src / "links").mkdir()
    (src / "links" / "first").write_text("linked three times\n")
    os.link(src / "links" / "first", src / "links" / "second")
    os.link(src / "links" / "first", src / "third")
    os.symlink("links/first", src / "symlink")
    os.symlink("/nonexistent/target", src / "dangling")
    os.mkfifo(src / "fifo", 0o640)
    os.mknod(src / "null-device", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    monkeypatch.chdir(src)  # AF_UNIX paths are limited to 108 bytes: bind relatively
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind("socket")
    (src / "xattr.txt").write_text("with attributes\n")
    os.setxattr(src / "xattr.txt", "user.tapir.comment", b"hello \x00 binary")
    os.setxattr(src / "links", "user.folder", b"on a folder")
    (src / "acl.txt").write_text("acl\n")
    subprocess.run(["setfacl", "-m", "u:nobody:rw-,g:daemon:r--", src / "acl.txt"], check=True)
    (src / "acl-dir").mkdir()
    subprocess.run(["setfacl", "-d", "-m", "u:nobody:rwx", src / "acl-dir"], check=True)
    (src / "acl-dir" / "inherited.txt").write_text("inherits the default ACL\n")
    (src / "setuid").write_text("#!/bin/sh\n")
    os.chmod(src / "setuid", 0o4755)
    (src / "private").write_text("secret\n")
    os.chmod(src / "private", 0o600)
    os.chown(src / "private", 1234, 2345)  # ids without names here: kept as numbers
    os.chown(src / "empty", 65534, 65534)  # nobody:nogroup
    os.chmod(src / "links", 0o1750)
    now = time.time_ns()
    for dirpath, dirnames, filenames in os.walk(os.fsencode(src), topdown=False):
        for name in filenames + dirnames:
            os.utime(
                os.path.join(dirpath, name),
                ns=(now - 10**12, OLD_NS + len(name) * 10**9 + 123),
                follow_symlinks=False,
            )
    os.utime(src, ns=(now, OLD_NS))


def getfacl(path: Path) -> str:
    return subprocess.run(
        ["getfacl", "--omit-header", "--absolute-names", path],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def test_full_backup_restores_everything(plugin, ctx, tmp_path, monkeypatch, progress):
    src = tmp_path / "src"
    build_tree(src, monkeypatch)
    sink, result = run_backup(plugin, ctx, [src])
    assert sink.warnings == []
    assert result.metadata["files_read"] > 0
    assert progress.current

    paths = [i.path for i in sink.items]
    assert (
        paths.index(rel(src))
        < paths.index(rel(src / "links"))
        < paths.index(rel(src / "links" / "first"))
    )
    # Ancestors of the job path come first, marked as parents only.
    assert sink.items[0].path == rel(tmp_path).split(b"/")[0]
    assert sink.items[0].extra == {"scaffold": True}
    assert sink.item(rel(src)).extra == {}

    third = sink.item(rel(src / "third"))
    second = sink.item(rel(src / "links" / "second"))
    # The walk is in byte order: links/first is met before links/second and third.
    assert (third.kind, third.target) == (ItemKind.HARDLINK, rel(src / "links" / "first"))
    assert (second.kind, second.target) == (ItemKind.HARDLINK, rel(src / "links" / "first"))
    assert sink.opened.count(rel(src / "links" / "first")) == 1
    assert sink.item(rel(src / "socket")).kind is ItemKind.SOCKET
    assert sink.item(rel(src / "null-device")).rdev == os.makedev(1, 3)
    assert sink.item(rel(src / "dangling")).target == b"/nonexistent/target"
    acl = sink.item(rel(src / "acl.txt")).xattrs
    assert b"system.posix_acl_access" in acl
    assert sink.item(rel(src / "empty")).user == "nobody"
    assert sink.item(rel(src / "private")).user is None

    sparse = sink.item(rel(src / "sparse"))
    assert sparse.chunks[1] == ChunkRef(None, 4 * MIB - 4096)
    assert sparse.chunks[-1] == ChunkRef(None, 4 * MIB - 4096)
    assert sum(c.length for c in sparse.chunks if c.id is not None) == 8192

    out = tmp_path / "out"
    restored = run_restore(plugin, ctx, sink, out)
    assert restored.failed == []
    assert restored.skipped == []
    assert [w for w in restored.warnings if "socket" not in w] == []
    assert any("socket" in w for w in restored.warnings)
    assert restored.items_restored == len(sink.items) - 1  # all but the socket

    copy = out / rel(src).decode()
    assert_same_tree(src, copy, ignore={b"socket"})
    assert not os.path.lexists(copy / "socket")
    assert getfacl(copy / "acl.txt") == getfacl(src / "acl.txt")
    assert "default:user:nobody:rwx" in getfacl(copy / "acl-dir")
    assert getfacl(copy / "acl-dir") == getfacl(src / "acl-dir")
    assert getfacl(copy / "acl-dir" / "inherited.txt") == getfacl(src / "acl-dir" / "inherited.txt")
    assert os.lstat(copy).st_mtime_ns == OLD_NS

    st = os.stat(copy / "sparse")
    assert st.st_blocks * 512 < 1 * MIB  # stayed sparse
    with open(copy / "sparse", "rb") as f:
        fd = f.fileno()
        assert os.lseek(fd, 0, os.SEEK_HOLE) < 4 * MIB  # the hole in the middle
        assert os.lseek(fd, 4096 + 1, os.SEEK_DATA) >= 4 * MIB - 4096
        assert os.lseek(fd, 4 * MIB, os.SEEK_HOLE) < 8 * MIB  # the trailing hole
    assert os.stat(copy / "links" / "first").st_nlink == 3


def test_restore_of_one_hard_link_alone_gets_the_data(plugin, ctx, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("shared\n")
    os.link(src / "a", src / "b")
    sink, _ = run_backup(plugin, ctx, [src])
    out = tmp_path / "out"
    result = run_restore(plugin, ctx, sink, out, paths=[rel(src / "b")])
    assert result.failed == []
    assert (out / rel(src).decode() / "b").read_text() == "shared\n"
    assert not (out / rel(src).decode() / "a").exists()
    assert any("separate copy" in w for w in result.warnings)
    # Folders created only to reach the item are private.
    assert stat.S_IMODE(os.stat(out / rel(src).decode()).st_mode) == 0o700


def test_job_path_that_is_a_symlink_is_stored_as_the_link(plugin, ctx, tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "f").write_text("x")
    os.symlink(real, tmp_path / "alias")
    sink, _ = run_backup(plugin, ctx, [tmp_path / "alias"])
    assert sink.item(rel(tmp_path / "alias")).kind is ItemKind.SYMLINK
    assert not any(i.path.endswith(b"/f") for i in sink.items)
    assert "symbolic link" in sink.warned(rel(tmp_path / "alias"))[0]


def test_overlapping_job_paths_store_each_entry_once(plugin, ctx, tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f").write_text("x")
    sink, _ = run_backup(plugin, ctx, [tmp_path / "a" / "b", tmp_path / "a", tmp_path / "a"])
    paths = [i.path for i in sink.items]
    assert len(paths) == len(set(paths))
    assert rel(tmp_path / "a" / "b" / "f") in paths
