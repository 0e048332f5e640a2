"""One file backup: walks the job's paths and hands every entry to the sink."""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field

from tapir.appliance.plugin_api import (
    BackupResult,
    BackupSink,
    Item,
    ItemKind,
    PluginContext,
    PluginError,
)

from .metadata import OwnerNames, capture
from .options import FilesOptions
from .prefetch import ListingPrefetcher
from .reader import SparseReader
from .selection import Selection
from .walker import Entry, Walker, describe

CHANGED = "changed-while-read"
READ_ERROR = "read-error"
#: Item.extra key marking a folder stored only as the parent of what was selected.
SCAFFOLD = "scaffold"


@dataclass
class Counters:
    items: int = 0
    files_read: int = 0
    files_reused: int = 0
    bytes_read: int = 0
    bytes_reused: int = 0
    warnings: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


class FileBackup:
    """Backs up the paths of one job into a sink."""

    def __init__(self, options: FilesOptions, sink: BackupSink, ctx: PluginContext) -> None:
        self.options = options
        self.sink = sink
        self.ctx = ctx
        self.names = OwnerNames()
        self.counters = Counters()
        #: (device, inode) of a multiply linked entry -> the item path of its first link.
        self.links: dict[tuple[int, int], bytes] = {}
        self.selection = Selection(options.include, options.exclude)

    def warn(self, path: bytes, message: str) -> None:
        """Report a problem with one entry; the run goes on."""
        self.counters.warnings += 1
        self.ctx.logger.warning("%s: %s", path.decode("utf-8", "backslashreplace"), message)
        self.sink.warn(path, message)

    def run(self) -> BackupResult:
        """Walk and store everything; raises :class:`PluginError` when no path exists."""
        # Incrementals skip unchanged files: reading ahead would read them for nothing.
        prefetcher = ListingPrefetcher() if self.sink.parent is None else None
        walker = Walker(
            self.options.paths,
            self.selection,
            self.warn,
            one_file_system=self.options.one_file_system,
            exclude_caches=self.options.exclude_caches,
            on_listing=prefetcher.folder_listed if prefetcher is not None else None,
        )
        try:
            for entry in walker:
                self.ctx.check_canceled()
                self._store(entry)
        finally:
            if prefetcher is not None:
                prefetcher.close()
        if walker.roots_found == 0:
            shown = ", ".join(os.fsdecode(p) for p in self.options.paths)
            raise PluginError(f"files: none of the job's paths could be read ({shown})")
        c = self.counters
        return BackupResult(
            metadata={
                "paths": [os.fsdecode(p) for p in self.options.paths],
                "items": c.items,
                "kinds": dict(sorted(c.by_kind.items())),
                "files_read": c.files_read,
                "files_reused": c.files_reused,
                "bytes_read": c.bytes_read,
                "bytes_reused": c.bytes_reused,
                "warnings": c.warnings,
            }
        )

    def _store(self, entry: Entry) -> None:
        item = capture(
            entry.rel_path,
            entry.abs_path,
            entry.st,
            self.names,
            lambda message: self.warn(entry.rel_path, message),
        )
        if entry.scaffold:
            item.extra[SCAFFOLD] = True
        key = (entry.st.st_dev, entry.st.st_ino)
        linked = item.kind is not ItemKind.DIRECTORY and entry.st.st_nlink > 1
        if linked and key in self.links:
            item.kind = ItemKind.HARDLINK
            item.target = self.links[key]
            item.size = 0
            self.sink.add(item)
        elif item.kind is ItemKind.FILE:
            if not self._store_file(entry, item):
                return
        elif item.kind is ItemKind.SYMLINK:
            try:
                item.target = os.readlink(entry.abs_path)
            except OSError as exc:
                self.warn(entry.rel_path, f"symbolic link not read: {describe(exc)}")
                return
            self.sink.add(item)
        else:
            self.sink.add(item)
        if linked and key not in self.links:
            self.links[key] = entry.rel_path
        self.counters.items += 1
        self.counters.by_kind[item.kind.value] = self.counters.by_kind.get(item.kind.value, 0) + 1
        # The engine's sink counts bytes and items; the plugin names what it is on.
        self.ctx.progress.advance(current=entry.abs_path.decode("utf-8", "backslashreplace"))

    def _unchanged(self, item: Item) -> Item | None:
        parent = self.sink.parent
        if parent is None:
            return None
        old = parent.lookup(item.path)
        if (
            old is not None
            and old.kind is ItemKind.FILE
            and (old.size, old.mtime_ns, old.ctime_ns, old.inode, old.device)
            == (item.size, item.mtime_ns, item.ctime_ns, item.inode, item.device)
            and CHANGED not in old.flags
            and READ_ERROR not in old.flags
            and old.stored_size == item.size
        ):
            return old
        return None

    def _store_file(self, entry: Entry, item: Item) -> bool:
        old = self._unchanged(item)
        if old is not None:
            item.chunks = list(old.chunks)
            self.sink.add(item)
            self.counters.files_reused += 1
            self.counters.bytes_reused += item.size
            return True
        fd = self._open(entry)
        if fd is None:
            return False
        try:
            return self._read(entry, item, fd)
        finally:
            os.close(fd)

    def _open(self, entry: Entry) -> int | None:
        # O_NONBLOCK: an entry replaced by a FIFO since the listing must not hang the run.
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            try:
                return os.open(entry.abs_path, flags | os.O_NOATIME)
            except PermissionError as exc:
                if exc.errno != errno.EPERM:  # O_NOATIME needs ownership; retry without it
                    raise
                return os.open(entry.abs_path, flags)
        except FileNotFoundError:
            self.warn(entry.rel_path, "vanished before it could be read; not backed up")
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                self.warn(entry.rel_path, "replaced by a symbolic link while listed; not backed up")
            else:
                self.warn(entry.rel_path, f"not readable, not backed up: {describe(exc)}")
        return None

    def _read(self, entry: Entry, item: Item, fd: int) -> bool:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode) or (before.st_dev, before.st_ino) != (
            entry.st.st_dev,
            entry.st.st_ino,
        ):
            self.warn(entry.rel_path, "replaced by another entry while listed; not backed up")
            return False
        # The open file is the truth from here on: take its newest metadata.
        item.size = before.st_size
        item.mtime_ns, item.ctime_ns = before.st_mtime_ns, before.st_ctime_ns
        item.mode = stat.S_IMODE(before.st_mode)
        item.uid, item.gid = before.st_uid, before.st_gid
        writer = self.sink.open_file(item)

        def on_data(n: int) -> None:
            self.counters.bytes_read += n
            self.ctx.check_canceled()

        reader = SparseReader(
            fd, item.size, writer, on_data, may_have_holes=before.st_blocks * 512 < item.size
        )
        error: OSError | None = None
        try:
            reader.run()
        except OSError as exc:
            error = exc
        if reader.done < item.size:
            # Keep the stored length equal to the recorded size; the flag tells restore
            # (and the operator) that this copy is not a faithful one.
            writer.hole(item.size - reader.done)
        after = os.fstat(fd)
        if error is not None:
            writer.flag(READ_ERROR)
            self.warn(
                entry.rel_path,
                f"read error at byte {reader.done}: {describe(error)}; the rest is stored as zeros",
            )
        elif reader.done < item.size or _changed(before, after):
            writer.flag(CHANGED)
            self.warn(entry.rel_path, "changed while it was read; the copy may be inconsistent")
        writer.close()
        self.counters.files_read += 1
        return True


def _changed(before: os.stat_result, after: os.stat_result) -> bool:
    return (before.st_size, before.st_mtime_ns, before.st_ctime_ns) != (
        after.st_size,
        after.st_mtime_ns,
        after.st_ctime_ns,
    )
