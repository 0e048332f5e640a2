"""The restore side: recreates files, folders, links and special files from a recovery point.

Safety rules (see docs/plugins/files.md): an item path that is absolute, holds
"..", or would be reached through a symbolic link is refused; every folder is
opened relative to its parent with O_NOFOLLOW, and files are written under a
temporary ``.tapir-incomplete`` name, then renamed into place only once their
data, size and metadata are right.
"""

from __future__ import annotations

import dataclasses
import os
import stat

from tapir.appliance.plugin_api import (
    ChunkCorrupt,
    Item,
    ItemKind,
    PluginContext,
    PluginError,
    RestoreRequest,
    RestoreResult,
    RestoreSource,
    RunCanceled,
    TapirError,
)

from .backup import READ_ERROR, SCAFFOLD
from .metadata import OwnerIds, apply_metadata, proc_path
from .safepath import ParentDirs, UnsafePath, components, display, open_dir_path

INCOMPLETE = b".tapir-incomplete"
NAME_MAX = 255
OVERWRITE_POLICIES = ("never", "older", "always")
_DEVICE_TYPES = {ItemKind.CHAR_DEVICE: stat.S_IFCHR, ItemKind.BLOCK_DEVICE: stat.S_IFBLK}


class _Failed(Exception):
    """One item could not be restored; the message says why."""


def incomplete_name(name: bytes) -> bytes:
    """The temporary name a file is written under (kept, so named, when its data is damaged)."""
    return name[: NAME_MAX - len(INCOMPLETE)] + INCOMPLETE


def _lstat_at(dir_fd: int, name: bytes) -> os.stat_result | None:
    try:
        return os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return None


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


class FileRestore:
    """Restores the items of one request into its target folder (or in place)."""

    def __init__(self, request: RestoreRequest, source: RestoreSource, ctx: PluginContext) -> None:
        if request.overwrite not in OVERWRITE_POLICIES:
            raise PluginError(
                f"files: overwrite must be one of {', '.join(OVERWRITE_POLICIES)}, "
                f"not {request.overwrite!r}"
            )
        if request.in_place:
            self.base = b"/"
        elif request.target is None:
            raise PluginError(
                "files: a restore needs a target folder (or in_place to use the original paths)"
            )
        else:
            self.base = os.fsencode(request.target)
        self.request = request
        self.source = source
        self.ctx = ctx
        self.result = RestoreResult()
        self.ids = OwnerIds()
        self.is_root = os.geteuid() == 0
        #: Non-folder entries this restore created, by item path (targets for hard links).
        self.restored: set[bytes] = set()
        self.finish_dirs: list[tuple[list[bytes], Item]] = []

    # Reporting.

    def warn(self, path: bytes, message: str) -> None:
        """A problem that did not stop the item from being restored."""
        self.ctx.logger.warning("%s: %s", display(path), message)
        self.result.warnings.append(f"{display(path)}: {message}")

    def fail(self, path: bytes, message: str) -> None:
        """The item was not restored."""
        self.ctx.logger.error("%s not restored: %s", display(path), message)
        self.result.failed.append(f"{display(path)}: {message}")

    def skip(self, path: bytes) -> None:
        """The item exists at the destination and the overwrite policy keeps it."""
        self.result.skipped.append(display(path))

    # The run.

    def run(self) -> RestoreResult:
        """Restore every requested item; one item's failure never stops the others."""
        if not self.request.in_place:
            os.makedirs(self.base, 0o700, exist_ok=True)
        base_fd = os.open(self.base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            self.dirs = ParentDirs(base_fd)
            try:
                for item in self.source.items(self.request.paths):
                    self.ctx.check_canceled()
                    self._guarded(item)
            finally:
                self.dirs.close()
            self._finish_dirs(base_fd)
        finally:
            os.close(base_fd)
        return self.result

    def _guarded(self, item: Item) -> None:
        try:
            self._restore(item)
        except UnsafePath as exc:
            self.fail(item.path, f"refused: {exc}")
        except _Failed as exc:
            self.fail(item.path, str(exc))
        except RunCanceled:
            raise
        except (OSError, TapirError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self.fail(item.path, reason)
        self.ctx.progress.advance(0, 1, current=display(item.path))

    def _restore(self, item: Item) -> None:
        parts = components(item.path)
        if item.kind is ItemKind.SOCKET:
            self.warn(item.path, "socket not restored (the program that listens creates it)")
            return
        if item.kind is ItemKind.DISK:
            raise _Failed("a disk image; the files plugin restores files only")
        if item.kind is ItemKind.HARDLINK:
            components(item.target or b"")  # refuse a bad link target before touching anything
        pfd = self.dirs.open(parts[:-1])
        name = parts[-1]
        existing = _lstat_at(pfd, name)
        if item.kind is ItemKind.DIRECTORY:
            self._restore_dir(item, parts, pfd, name, existing)
            return
        if existing is not None:
            if not self._may_replace(existing, item):
                self.skip(item.path)
                return
            if stat.S_ISDIR(existing.st_mode):
                raise _Failed("a folder is in the way; it is not replaced by a non-folder")
        key = b"/".join(parts)
        if item.kind is ItemKind.FILE:
            if not self._restore_file(item, pfd, name):
                return
        else:
            if existing is not None:
                os.unlink(name, dir_fd=pfd)
            if item.kind is ItemKind.HARDLINK:
                self._restore_hardlink(item, pfd, name)
                return
            if item.kind is ItemKind.SYMLINK:
                self._restore_symlink(item, pfd, name)
            elif not self._restore_special(item, pfd, name):
                return
        self.restored.add(key)
        self.result.items_restored += 1

    def _may_replace(self, existing: os.stat_result, item: Item) -> bool:
        policy = self.request.overwrite
        if policy == "always":
            return True
        if policy == "older":
            return existing.st_mtime_ns < item.mtime_ns
        return False

    # Kinds.

    def _restore_dir(
        self,
        item: Item,
        parts: list[bytes],
        pfd: int,
        name: bytes,
        existing: os.stat_result | None,
    ) -> None:
        if existing is not None and stat.S_ISDIR(existing.st_mode):
            # An existing folder is merged into. Its own metadata changes only when
            # the operator asked to overwrite, and never for a folder that was stored
            # only as the parent of the selected paths (/srv above /srv/data).
            if self.request.overwrite == "always" and not item.extra.get(SCAFFOLD):
                self.finish_dirs.append((parts, item))
                self.result.items_restored += 1
            return
        if existing is not None:
            if not self._may_replace(existing, item):
                self.skip(item.path)
                return
            os.unlink(name, dir_fd=pfd)
        # Private until finished: mode, owner and times are applied after the contents.
        os.mkdir(name, 0o700, dir_fd=pfd)
        self.finish_dirs.append((parts, item))
        self.result.items_restored += 1

    def _restore_file(self, item: Item, pfd: int, name: bytes) -> bool:
        if item.stored_size != item.size:
            raise _Failed(
                f"the recovery point holds {item.stored_size} bytes for a file of {item.size}"
            )
        temp = incomplete_name(name)
        leftover = _lstat_at(pfd, temp)
        if leftover is not None:
            if stat.S_ISDIR(leftover.st_mode):
                raise _Failed(f"a folder named {display(temp)} is in the way")
            os.unlink(temp, dir_fd=pfd)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(temp, flags, 0o600, dir_fd=pfd)
        done = False
        keep_partial = False
        try:
            try:
                self._write_data(fd, item)
            except RunCanceled:
                raise
            except TapirError as exc:
                # Damaged data: keep what was readable under a name that says so.
                keep_partial = True
                self.fail(item.path, f"{exc}; the partial file is kept as {display(temp)}")
                return False
            apply_metadata(
                fd, item, self.ids, lambda m: self.warn(item.path, m), is_root=self.is_root
            )
            done = True
        finally:
            os.close(fd)
            if not done and not keep_partial:
                os.unlink(temp, dir_fd=pfd)
        os.rename(temp, name, src_dir_fd=pfd, dst_dir_fd=pfd)
        if READ_ERROR in item.flags:
            self.warn(item.path, "was stored after a read error: parts of it are zeros")
        self.result.bytes_restored += item.size
        return True

    def _write_data(self, fd: int, item: Item) -> None:
        for offset, ref in item.chunk_offsets():
            self.ctx.check_canceled()
            if ref.id is None:
                continue  # a hole: never written, so it stays sparse
            data = self.source.read_chunk(ref.id)
            if len(data) != ref.length:
                raise ChunkCorrupt(ref.id, f"{len(data)} bytes instead of {ref.length}")
            _pwrite_all(fd, data, offset)
            self.ctx.progress.advance(len(data), 0)
        os.ftruncate(fd, item.size)  # a trailing hole
        size = os.fstat(fd).st_size
        if size != item.size:
            raise _Failed(f"restored size {size} differs from the stored size {item.size}")

    def _restore_hardlink(self, item: Item, pfd: int, name: bytes) -> None:
        tparts = components(item.target or b"")
        tkey = b"/".join(tparts)
        if tkey in self.restored:
            tfd = open_dir_path(self.dirs.base_fd, tparts[:-1])
            try:
                os.link(tparts[-1], name, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
            finally:
                os.close(tfd)
            self.restored.add(b"/".join(components(item.path)))
            self.result.items_restored += 1
            return
        # The first link was not restored here (a partial restore, or it was skipped):
        # restore its data under this name instead, never link to a file we did not write.
        first = next(
            (i for i in self.source.items([item.target or b""]) if i.path == item.target), None
        )
        if first is None or first.kind in (ItemKind.DIRECTORY, ItemKind.HARDLINK):
            raise _Failed(f"hard link to {display(tkey)}, which the recovery point does not hold")
        self.warn(
            item.path,
            f"hard link to {display(tkey)} restored as a separate copy "
            "(that path was not restored by this run)",
        )
        self._restore(dataclasses.replace(first, path=item.path))

    def _restore_symlink(self, item: Item, pfd: int, name: bytes) -> None:
        if item.target is None:
            raise _Failed("symbolic link without a target")
        os.symlink(item.target, name, dir_fd=pfd)
        # The parent is reached through its descriptor; the link itself is not followed.
        path = proc_path(pfd) + b"/" + name
        apply_metadata(
            path, item, self.ids, lambda m: self.warn(item.path, m), is_root=self.is_root
        )

    def _restore_special(self, item: Item, pfd: int, name: bytes) -> bool:
        if item.kind is ItemKind.FIFO:
            os.mkfifo(name, 0o600, dir_fd=pfd)
            expected = stat.S_IFIFO
        else:
            expected = _DEVICE_TYPES[item.kind]
            if not self.is_root:
                self.warn(item.path, "device node not restored: that needs root")
                return False
            os.mknod(name, 0o600 | expected, item.rdev, dir_fd=pfd)
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        try:
            if stat.S_IFMT(os.fstat(fd).st_mode) != expected:
                raise _Failed("replaced by something else while being restored")
            apply_metadata(
                proc_path(fd),
                item,
                self.ids,
                lambda m: self.warn(item.path, m),
                is_root=self.is_root,
            )
        finally:
            os.close(fd)
        return True

    def _finish_dirs(self, base_fd: int) -> None:
        # Deepest first: setting a folder's times must come after its contents changed.
        for parts, item in reversed(self.finish_dirs):
            try:
                fd = open_dir_path(base_fd, parts)
            except (UnsafePath, OSError) as exc:
                self.warn(item.path, f"folder metadata not restored: {exc}")
                continue
            try:
                apply_metadata(
                    fd, item, self.ids, lambda m, p=item.path: self.warn(p, m), is_root=self.is_root
                )
            finally:
                os.close(fd)
