"""Garbage collection: remove dead chunks by rewriting the packs that hold them.

Runs with the pool's exclusive lock held. Work goes in steps; each step copies
the live entries of some packs into new packs, publishes one segment that lists
the whole index and supersedes all earlier segments (the commit point), then
deletes the old segments and packs. A crash at any point leaves either the old
index in effect (the new packs are removed by the journal) or the new one (the
journal finishes the deletions). Packs that hold only dead entries go first,
since dropping them needs no free space.
"""

from __future__ import annotations

import logging
import secrets
from collections import defaultdict
from pathlib import Path

from .files import fsync_dir, make_dir
from .index import IndexDamaged, IndexRecord, IndexSnapshot, read_snapshot, write_segment
from .journal import Journal, resolve, write_journal
from .layout import PoolLayout
from .packs import (
    ENTRY_HEADER_SIZE,
    PACK_ID_SIZE,
    PackDamaged,
    PackEntryGone,
    PackWriter,
    read_entry,
)

log = logging.getLogger(__name__)


class _PackUnreadable(Exception):
    def __init__(self, pack_id: bytes, reason: str) -> None:
        self.pack_id = pack_id
        super().__init__(reason)


def collect(layout: PoolLayout, dead: set[bytes], pack_size: int) -> int:
    """Remove the ``dead`` chunks; returns the bytes freed in pack files."""
    freed = 0
    unreadable: set[bytes] = set()
    while True:
        snap = read_snapshot(layout.index)
        if snap.damaged:
            raise IndexDamaged(
                "garbage collection refused: the index is damaged ("
                + "; ".join(snap.damaged.values())
                + ")"
            )
        by_pack: dict[bytes, list[IndexRecord]] = defaultdict(list)
        for r in snap.records():
            by_pack[r.pack_id].append(r)
        affected = {
            pid
            for pid, rs in by_pack.items()
            if pid not in unreadable and any(r.chunk_id in dead for r in rs)
        }
        if not affected:
            return freed
        batch = _next_batch(by_pack, affected, dead, pack_size)
        try:
            freed += _step(layout, snap, by_pack, batch, dead, pack_size)
        except _PackUnreadable as exc:
            # Leave a damaged pack as it is: its dead chunks stay, nothing is lost.
            log.warning("disk pool %s: not rewriting a pack: %s", layout.root, exc)
            unreadable.add(exc.pack_id)


def _next_batch(
    by_pack: dict[bytes, list[IndexRecord]], affected: set[bytes], dead: set[bytes], limit: int
) -> list[bytes]:
    elsewhere = {r.chunk_id for pid, rs in by_pack.items() if pid not in affected for r in rs}

    def live_bytes(pid: bytes) -> int:
        return sum(
            r.length for r in by_pack[pid] if r.chunk_id not in dead and r.chunk_id not in elsewhere
        )

    empty = sorted(pid for pid in affected if live_bytes(pid) == 0)
    if empty:
        return empty
    # Bound the new data per step: the old packs go only after the step commits.
    batch, total = [], 0
    for pid in sorted(affected):
        batch.append(pid)
        total += live_bytes(pid)
        if total >= 4 * limit:
            break
    return batch


def _step(
    layout: PoolLayout,
    snap: IndexSnapshot,
    by_pack: dict[bytes, list[IndexRecord]],
    batch: list[bytes],
    dead: set[bytes],
    pack_size: int,
) -> int:
    op = secrets.token_hex(16)
    op_dir = layout.tmp / op
    make_dir(op_dir)
    try:
        in_batch = set(batch)
        keep = [r for r in snap.records() if r.pack_id not in in_batch]
        present = {r.chunk_id for r in keep}
        writers: list[PackWriter] = []
        try:
            new_records = _copy_live(
                layout, op_dir, by_pack, batch, dead, present, pack_size, writers
            )
        finally:
            for w in writers:
                w.close()
        old_size = sum(_size(layout.pack_path(pid)) for pid in batch)
        new_size = sum(w.size for w in writers)
        write_journal(
            op_dir,
            Journal(
                "gc",
                op,
                new_packs=[w.pack_id.hex() for w in writers],
                old_segments=sorted(snap.names),
                old_packs=[pid.hex() for pid in batch],
            ),
        )
        dirs: set[Path] = set()
        for w in writers:
            make_dir(layout.pack_dir(w.pack_id))
            w.path.rename(layout.pack_path(w.pack_id))
            dirs.add(layout.pack_dir(w.pack_id))
        for d in sorted(dirs):
            fsync_dir(d)
        write_segment(layout.index, op, keep + new_records, supersedes=snap.names)
    finally:
        resolve(layout, op_dir)
    return max(old_size - new_size, 0)


def _copy_live(
    layout: PoolLayout,
    op_dir: Path,
    by_pack: dict[bytes, list[IndexRecord]],
    batch: list[bytes],
    dead: set[bytes],
    present: set[bytes],
    pack_size: int,
    writers: list[PackWriter],
) -> list[IndexRecord]:
    new_records: list[IndexRecord] = []
    for pid in batch:
        path = layout.pack_path(pid)
        for r in by_pack[pid]:
            if r.chunk_id in dead or r.chunk_id in present:
                continue
            try:
                blob = read_entry(path, r.offset, r.chunk_id, r.length, check_payload=True)
            except (PackDamaged, PackEntryGone) as exc:
                raise _PackUnreadable(pid, str(exc)) from exc
            w = writers[-1] if writers else None
            if w is None or (w.entries and w.size + ENTRY_HEADER_SIZE + len(blob) > pack_size):
                if w is not None:
                    w.finish()
                pack_id = secrets.token_bytes(PACK_ID_SIZE)
                w = PackWriter(op_dir / f"{pack_id.hex()}.pack", pack_id)
                writers.append(w)
            e = w.append(r.chunk_id, blob)
            new_records.append(IndexRecord(e.chunk_id, w.pack_id, e.offset, e.length))
            present.add(r.chunk_id)
    if writers:
        writers[-1].finish()
    return new_records


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
