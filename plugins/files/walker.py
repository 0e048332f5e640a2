"""The tree walk: every entry below the job's paths, parents first, in byte order.

Names are handled as bytes from ``os.scandir`` so that any byte sequence a file
system allows survives. Symbolic links are never followed; with
``one_file_system`` the walk does not descend into another file system.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .selection import Selection, Verdict

#: The signature every CACHEDIR.TAG starts with (https://bford.info/cachedir/).
CACHEDIR_SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"

WarnFn = Callable[[bytes, str], None]


@dataclass
class Entry:
    """One file system entry to back up."""

    abs_path: bytes
    #: The item path: relative to "/", without the leading slash.
    rel_path: bytes
    st: os.stat_result
    #: Stored only as the parent of selected entries (an ancestor of a job path, or
    #: an excluded folder walked for an include pattern).
    scaffold: bool = False
    emitted: bool = field(default=False, repr=False)


@dataclass
class _Frame:
    entry: Entry
    verdict: Verdict
    pending: tuple[Entry, ...]
    root_dev: int
    children: Iterator[tuple[bytes, os.stat_result]] | None = None


def describe(exc: OSError) -> str:
    """An operator-readable reason for an OS error."""
    return exc.strerror or str(exc)


class Walker:
    """Yields the :class:`Entry` objects of a backup in stored order."""

    def __init__(
        self,
        roots: tuple[bytes, ...],
        selection: Selection,
        warn: WarnFn,
        one_file_system: bool = False,
        exclude_caches: bool = True,
        on_listing: Callable[[bytes, list[tuple[bytes, os.stat_result]]], None] | None = None,
    ) -> None:
        self.roots = _distinct_roots(roots)
        #: Called with a folder's path and its listing once it is read (for read-ahead).
        self.on_listing = on_listing
        self.selection = selection
        self.warn = warn
        self.one_file_system = one_file_system
        self.exclude_caches = exclude_caches
        self.roots_found = 0
        self._ancestors_emitted: set[bytes] = set()

    def __iter__(self) -> Iterator[Entry]:
        for root in self.roots:
            yield from self._walk_root(root)

    def _walk_root(self, root: bytes) -> Iterator[Entry]:
        try:
            st = os.lstat(root)
        except OSError as exc:
            self.warn(root.lstrip(b"/"), f"job path {os.fsdecode(root)} skipped: {describe(exc)}")
            return
        ancestors, verdict = self._ancestors(root)
        if ancestors is None:
            return
        self.roots_found += 1
        if stat.S_ISLNK(st.st_mode):
            self.warn(
                root.lstrip(b"/"),
                f"job path {os.fsdecode(root)} is a symbolic link: only the link is stored "
                "(list its target to back up what it points to)",
            )
        stack: list[_Frame] = []
        entry = Entry(root, root.lstrip(b"/"), st)
        yield from self._visit(entry, verdict, ancestors, st.st_dev, stack)
        while stack:
            frame = stack[-1]
            if frame.children is None:
                frame.children = iter(self._list(frame.entry))
            child = next(frame.children, None)
            if child is None:
                stack.pop()
                continue
            name, cst = child
            parent = frame.entry
            rel = parent.rel_path + b"/" + name if parent.rel_path else name
            abs_path = b"/" + rel
            yield from self._visit(
                Entry(abs_path, rel, cst), frame.verdict, frame.pending, frame.root_dev, stack
            )

    def _ancestors(self, root: bytes) -> tuple[tuple[Entry, ...] | None, Verdict]:
        # Ancestors are followed (stat, not lstat): a job path below a symlinked
        # folder (/var/run -> /run) is stored at the path the operator named.
        entries: list[Entry] = []
        verdict = Verdict()
        parts = root.strip(b"/").split(b"/") if root != b"/" else []
        for depth in range(1, len(parts)):
            rel = b"/".join(parts[:depth])
            try:
                st = os.stat(b"/" + rel)
            except OSError as exc:
                self.warn(rel, f"job path {os.fsdecode(root)} skipped: {describe(exc)}")
                return None, verdict
            verdict = self.selection.judge(b"/" + rel, verdict)
            entry = Entry(b"/" + rel, rel, st, scaffold=True)
            entry.emitted = rel in self._ancestors_emitted
            entries.append(entry)
        return tuple(entries), verdict

    def _visit(
        self,
        entry: Entry,
        parent_verdict: Verdict,
        pending: tuple[Entry, ...],
        root_dev: int,
        stack: list[_Frame],
    ) -> Iterator[Entry]:
        is_dir = stat.S_ISDIR(entry.st.st_mode)
        other_fs = entry.st.st_dev != root_dev
        if self.one_file_system and other_fs and not is_dir:
            return  # a file bind-mounted from another file system
        verdict = self.selection.judge(entry.abs_path, parent_verdict)
        if verdict.selected:
            for ancestor in pending:
                if not ancestor.emitted:
                    ancestor.emitted = True
                    self._ancestors_emitted.add(ancestor.rel_path)
                    yield ancestor
            entry.emitted = True
            if entry.rel_path:  # "/" itself has no item path
                yield entry
            if is_dir and not (self.one_file_system and other_fs):
                stack.append(_Frame(entry, verdict, (), root_dev))
        elif is_dir and self.selection.walk_excluded(entry.abs_path):
            if self.one_file_system and other_fs:
                return
            entry.scaffold = True
            stack.append(_Frame(entry, verdict, (*pending, entry), root_dev))

    def _list(self, folder: Entry) -> list[tuple[bytes, os.stat_result]]:
        try:
            with os.scandir(folder.abs_path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            self.warn(folder.rel_path, f"folder not read: {describe(exc)}")
            return []
        if self.exclude_caches and any(e.name == b"CACHEDIR.TAG" for e in entries):
            tag = next(e for e in entries if e.name == b"CACHEDIR.TAG")
            if _is_cache_tag(tag.path):
                entries = [tag]
        listing: list[tuple[bytes, os.stat_result]] = []
        for e in entries:
            # Stat every entry now: a file that disappears later is then reported
            # as vanished when it is opened, with its listing still consistent.
            try:
                listing.append((e.name, e.stat(follow_symlinks=False)))
            except OSError as exc:
                rel = folder.rel_path + b"/" + e.name if folder.rel_path else e.name
                if exc.errno == errno.ENOENT:
                    self.warn(rel, "vanished before it could be read; not backed up")
                else:
                    self.warn(rel, f"not backed up: {describe(exc)}")
        if self.on_listing is not None:
            self.on_listing(folder.abs_path, listing)
        return listing


def _is_cache_tag(path: bytes) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        return os.read(fd, len(CACHEDIR_SIGNATURE)) == CACHEDIR_SIGNATURE
    finally:
        os.close(fd)


def _distinct_roots(roots: tuple[bytes, ...]) -> list[bytes]:
    """Sorted job paths without those lying inside another job path."""
    kept: list[bytes] = []
    for root in sorted(set(roots)):
        if any(root == k or root.startswith(k.rstrip(b"/") + b"/") for k in kept):
            continue
        kept.append(root)
    return kept
