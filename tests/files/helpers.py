"""Helpers for the file source tests: running a backup and restore, comparing trees."""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from tapir.appliance.plugin_api import (
    AssetInfo,
    BackupRequest,
    BackupResult,
    PluginContext,
    RestoreRequest,
    RestoreResult,
)
from tapir.appliance.plugin_api.testing.memory_sink import MemoryRestoreSource, MemorySink
from tapir.plugins.files.plugin import FilesPlugin

ASSET = AssetInfo(kind="host", name="test", external_id="files:test")


@dataclass
class RecordingProgress:
    totals: list[tuple[int | None, int | None]] = field(default_factory=list)
    bytes_done: int = 0
    items_done: int = 0
    current: list[str] = field(default_factory=list)

    def set_total(self, bytes_total: int | None = None, items_total: int | None = None) -> None:
        self.totals.append((bytes_total, items_total))

    def advance(self, bytes_done: int = 0, items_done: int = 0, current: str | None = None) -> None:
        self.bytes_done += bytes_done
        self.items_done += items_done
        if current is not None:
            self.current.append(current)


def run_backup(
    plugin: FilesPlugin,
    ctx: PluginContext,
    paths: list[Path | str],
    sink: MemorySink | None = None,
    **options: object,
) -> tuple[MemorySink, BackupResult]:
    """Back up ``paths`` into a (new) MemorySink and check it was left complete."""
    sink = sink or MemorySink()
    request = BackupRequest(ASSET, "full", {"paths": [str(p) for p in paths], **options})
    result = plugin.backup(request, sink, ctx)
    sink.check_complete()
    return sink, result


def run_restore(
    plugin: FilesPlugin,
    ctx: PluginContext,
    source: MemorySink | MemoryRestoreSource,
    target: Path | None,
    **kwargs: object,
) -> RestoreResult:
    if isinstance(source, MemorySink):
        source = MemoryRestoreSource(source)
    request = RestoreRequest(ASSET, target=target, **kwargs)  # type: ignore[arg-type]
    return plugin.restore(request, source, ctx)


def rel(path: Path) -> bytes:
    """The item path of an absolute path."""
    return os.fsencode(path).lstrip(b"/")


@dataclass
class Snapshot:
    """Everything the tests compare about one entry."""

    kind: int
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    atime_ns: int | None
    rdev: int
    target: bytes | None
    data: bytes | None
    xattrs: dict[str, bytes]
    link_group: int | None


def snapshot_tree(root: Path) -> dict[bytes, Snapshot]:
    """Metadata and contents of every entry below ``root`` (stats taken before any read)."""
    base = os.fsencode(root)
    stats: dict[bytes, os.stat_result] = {}
    for dirpath, dirnames, filenames in os.walk(base):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            stats[os.path.relpath(full, base)] = os.lstat(full)
    inode_groups: dict[int, int] = {}
    out: dict[bytes, Snapshot] = {}
    for relpath in sorted(stats):
        st = stats[relpath]
        full = os.path.join(base, relpath)
        kind = stat.S_IFMT(st.st_mode)
        data = None
        if stat.S_ISREG(st.st_mode):
            with open(full, "rb") as f:
                data = f.read()
        xattrs = {}
        if not stat.S_ISLNK(st.st_mode) and not stat.S_ISFIFO(st.st_mode):
            xattrs = {
                n: os.getxattr(full, n, follow_symlinks=False)
                for n in os.listxattr(full, follow_symlinks=False)
                if n.startswith("user.")
            }
        group = None
        if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
            group = inode_groups.setdefault(st.st_ino, len(inode_groups))
        out[relpath] = Snapshot(
            kind=kind,
            mode=stat.S_IMODE(st.st_mode),
            uid=st.st_uid,
            gid=st.st_gid,
            size=st.st_size if not stat.S_ISDIR(st.st_mode) else 0,
            mtime_ns=st.st_mtime_ns,
            # Folder atimes move whenever a folder is listed; file atimes must round-trip.
            atime_ns=st.st_atime_ns if stat.S_ISREG(st.st_mode) else None,
            rdev=st.st_rdev,
            target=os.readlink(full) if stat.S_ISLNK(st.st_mode) else None,
            data=data,
            xattrs=xattrs,
            link_group=group,
        )
    return out


def assert_same_tree(expected: Path, actual: Path, ignore: set[bytes] = frozenset()) -> None:
    want = {k: v for k, v in snapshot_tree(expected).items() if k not in ignore}
    got = {k: v for k, v in snapshot_tree(actual).items() if k not in ignore}
    assert sorted(got) == sorted(want)
    for path, snap in want.items():
        assert got[path] == snap, (path, got[path], snap)


def make_ctx(progress: RecordingProgress | None = None) -> PluginContext:
    return PluginContext(
        logger=logging.getLogger("tests.files"), progress=progress or RecordingProgress()
    )
