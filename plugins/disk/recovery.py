"""Clean-up after crashes and the index rebuild from packs alone (disaster recovery).

Both run with the pool's exclusive lock held, so no writer is active meanwhile.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from .files import TMP_PREFIX, fsync_dir, make_dir, remove_quietly
from .index import SEGMENT_SUFFIX, IndexRecord, read_snapshot, write_segment
from .journal import Journal, resolve, write_journal
from .layout import PoolLayout
from .packs import PACK_ID_SIZE, PackDamaged, PackEntryGone, read_table, scan_pack


@dataclass
class RebuildReport:
    """What an index rebuild found in the packs."""

    packs: int = 0
    entries: int = 0
    problems: list[str] = field(default_factory=list)


def clean_up(layout: PoolLayout) -> None:
    """Finish or undo interrupted operations and drop stray temporary files."""
    for entry in sorted(layout.tmp.iterdir()):
        resolve(layout, entry)
    for folder in (layout.config, layout.manifests, layout.index):
        for name in os.listdir(folder):
            if name.startswith(TMP_PREFIX):
                remove_quietly(folder / name)
    # Superseded segments outlive their journal only if someone removed the journal;
    # they are out of effect either way.
    snap = read_snapshot(layout.index)
    if not snap.damaged:
        for name in sorted(set(snap.segments) - set(snap.in_effect)):
            remove_quietly(layout.index / f"{name}{SEGMENT_SUFFIX}")
    fsync_dir(layout.index)


def pack_files(layout: PoolLayout) -> list[tuple[bytes, Path]]:
    """Every committed pack file (id from its name) under ``packs/``."""
    found = []
    for sub in sorted(layout.packs.iterdir()):
        if not sub.is_dir() or len(sub.name) != 2:
            continue
        for name in sorted(os.listdir(sub)):
            stem = name.removesuffix(".pack")
            if name.endswith(".pack") and len(stem) == 2 * PACK_ID_SIZE:
                try:
                    found.append((bytes.fromhex(stem), sub / name))
                except ValueError:
                    continue
    return found


def rebuild(layout: PoolLayout, deep: bool = False) -> RebuildReport:
    """Replace the index by one segment read from the packs.

    A pack's table is used when intact; otherwise (or with ``deep``) its entry
    headers are walked, which also checks every payload checksum and salvages the
    intact entries of a damaged pack. Problems are reported, never fatal.
    """
    report = RebuildReport()
    records: list[IndexRecord] = []
    for pack_id, path in pack_files(layout):
        report.packs += 1
        entries = None
        if not deep:
            try:
                entries = read_table(path)
            except (PackDamaged, PackEntryGone) as exc:
                report.problems.append(f"{exc}; walking its entries instead")
        if entries is None:
            scan = scan_pack(path)
            entries = scan.entries
            report.problems.extend(scan.problems)
        records.extend(IndexRecord(e.chunk_id, pack_id, e.offset, e.length) for e in entries)
    report.entries = len(records)
    old = read_snapshot(layout.index).names
    op = secrets.token_hex(16)
    op_dir = layout.tmp / op
    make_dir(op_dir)
    try:
        write_journal(op_dir, Journal("rebuild", op, old_segments=sorted(old)))
        write_segment(layout.index, op, records, supersedes=old)
    finally:
        resolve(layout, op_dir)
    return report
