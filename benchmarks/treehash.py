"""Compare two folder trees by content hash, to prove a restore is byte-identical."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import blake3

READ_BLOCK = 4 * 1024 * 1024


@dataclass(frozen=True)
class Entry:
    """One tree member: its kind, size and content hash (files) or link target."""

    kind: str
    size: int
    digest: str
    mode: int
    mtime_ns: int


@dataclass
class Comparison:
    """Differences between an expected and an actual tree."""

    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    mode_differs: list[str] = field(default_factory=list)
    mtime_differs: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        """True when every path exists on both sides with the same kind and bytes."""
        return not (self.missing or self.extra or self.changed)

    def describe(self, limit: int = 10) -> str:
        """A short human summary of the content differences."""
        parts = []
        for label, items in (
            ("missing", self.missing),
            ("extra", self.extra),
            ("changed", self.changed),
        ):
            if items:
                shown = ", ".join(items[:limit])
                more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
                parts.append(f"{len(items)} {label}: {shown}{more}")
        return "; ".join(parts) or "identical"


def _file_digest(path: str) -> str:
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    with open(path, "rb") as handle:
        while block := handle.read(READ_BLOCK):
            hasher.update(block)
    return hasher.hexdigest()


def digest_tree(root: Path) -> dict[str, Entry]:
    """Map every path under ``root`` (relative, '/'-separated) to its :class:`Entry`."""
    if not root.is_dir():
        raise FileNotFoundError(f"not a folder: {root}")
    entries: dict[str, Entry] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            st = os.lstat(full)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                entries[rel] = Entry("link", 0, os.readlink(full), mode, st.st_mtime_ns)
            elif stat.S_ISDIR(st.st_mode):
                entries[rel] = Entry("dir", 0, "", mode, st.st_mtime_ns)
            elif stat.S_ISREG(st.st_mode):
                entries[rel] = Entry("file", st.st_size, _file_digest(full), mode, st.st_mtime_ns)
            else:
                entries[rel] = Entry("special", 0, "", mode, st.st_mtime_ns)
    return entries


def compare_trees(expected: dict[str, Entry], actual: dict[str, Entry]) -> Comparison:
    """Compare two digests; content differences make the result non-identical.

    Mode and file mtime differences are recorded but do not fail the comparison:
    not every peer restores them, and the benchmark is about data.
    """
    result = Comparison()
    result.missing = sorted(expected.keys() - actual.keys())
    result.extra = sorted(actual.keys() - expected.keys())
    for rel in sorted(expected.keys() & actual.keys()):
        want, got = expected[rel], actual[rel]
        if (want.kind, want.size, want.digest) != (got.kind, got.size, got.digest):
            result.changed.append(rel)
            continue
        if want.mode != got.mode:
            result.mode_differs.append(rel)
        # Second resolution: some formats keep no sub-second mtimes.
        if want.kind == "file" and want.mtime_ns // 10**9 != got.mtime_ns // 10**9:
            result.mtime_differs.append(rel)
    return result
