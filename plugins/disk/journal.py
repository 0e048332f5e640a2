"""Journals of operations that publish packs and segments, and how to finish or undo them.

Each operation (a commit, a garbage collection step, an index rebuild) works in
its own folder under ``tmp/``. Before it moves anything into ``packs/`` or
``index/`` it writes ``journal.json`` there, naming the segment it will publish,
the packs it adds and the segments and packs it will then remove. Publishing the
segment is the commit point. :func:`resolve` brings a journal to its end: roll
forward when the segment exists, roll back otherwise. It runs when the operation
ends and, for operations cut short by a crash, at the next clean-up (exclusive
lock held). A pack is only ever deleted because a journal names it, so a lost
index segment never makes the clean-up delete packs that hold data.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .files import atomic_write, fsync_dir, remove_quietly
from .index import SEGMENT_SUFFIX
from .layout import PoolLayout

JOURNAL = "journal.json"


@dataclass
class Journal:
    """What one operation publishes (``segment``, ``new_packs``) and retires."""

    op: str
    segment: str
    new_packs: list[str] = field(default_factory=list)
    old_segments: list[str] = field(default_factory=list)
    old_packs: list[str] = field(default_factory=list)


def write_journal(op_dir: Path, journal: Journal) -> None:
    """Record the intent durably, before the first file moves into the pool."""
    atomic_write(op_dir / JOURNAL, json.dumps(asdict(journal)).encode())


def _read_journal(op_dir: Path) -> Journal | None:
    try:
        raw = json.loads((op_dir / JOURNAL).read_bytes())
    except (FileNotFoundError, NotADirectoryError):
        return None
    return Journal(**raw)


def _remove_packs(layout: PoolLayout, hex_ids: list[str]) -> None:
    dirs: set[Path] = set()
    for hex_id in hex_ids:
        pack_id = bytes.fromhex(hex_id)
        remove_quietly(layout.pack_path(pack_id))
        dirs.add(layout.pack_dir(pack_id))
    for d in sorted(dirs):
        if d.is_dir():
            fsync_dir(d)


def resolve(layout: PoolLayout, op_dir: Path) -> None:
    """Finish (segment published) or undo (not published) an operation, then drop its folder."""
    journal = _read_journal(op_dir)
    if journal is not None:
        if (layout.index / f"{journal.segment}{SEGMENT_SUFFIX}").exists():
            for name in journal.old_segments:
                if name != journal.segment:
                    remove_quietly(layout.index / f"{name}{SEGMENT_SUFFIX}")
            fsync_dir(layout.index)
            _remove_packs(layout, journal.old_packs)
        else:
            _remove_packs(layout, journal.new_packs)
    if op_dir.is_dir():
        shutil.rmtree(op_dir, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            op_dir.unlink()
    fsync_dir(op_dir.parent)
