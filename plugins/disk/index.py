"""The chunk index: chunk id -> (pack, offset, length), kept as immutable segment files.

Every commit publishes one segment listing the entries of the packs it wrote;
garbage collection and :meth:`DiskStore.rebuild_index` publish one segment that
lists the whole index and *supersedes* every segment that existed before, so the
switch from the old index to the new one is a single rename. A chunk is
committed exactly when a segment in effect lists it. Each process keeps the
union of the segments in effect in memory and picks up segments written by
others when it refreshes (on ``begin()`` and on a miss).

Segment layout (little endian; see docs/format/disk-pool.md)::

    "TAPIRIDX" u32 version, u32 superseded count, u32 record count
    per superseded segment: its 16-byte name
    per record: 32-byte chunk id, 16-byte pack id, u64 entry offset, u32 length
    u32 crc32 of everything before it
"""

from __future__ import annotations

import logging
import os
import re
import struct
import threading
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from tapir.appliance.plugin_api import TapirError

from .files import atomic_write

log = logging.getLogger(__name__)

SEGMENT_MAGIC = b"TAPIRIDX"
SEGMENT_VERSION = 1
SEGMENT_SUFFIX = ".idx"
_NAME = re.compile(r"^[0-9a-f]{32}$")

_HEAD = struct.Struct("<8sIII")
_NAME_SIZE = 16
_RECORD = struct.Struct("<32s16sQI")
_CRC = struct.Struct("<I")

# A folder listing taken this soon after the folder's last change may have missed a
# change made in the same coarse timestamp tick, so it is not trusted as up to date.
_RACY_NS = 2_000_000_000


class IndexDamaged(TapirError):
    """An index segment fails its checks; :meth:`DiskStore.rebuild_index` recreates it."""


class Location(NamedTuple):
    """Where a chunk's entry lies."""

    pack_id: bytes
    offset: int
    length: int


class IndexRecord(NamedTuple):
    """One line of a segment."""

    chunk_id: bytes
    pack_id: bytes
    offset: int
    length: int


@dataclass
class Segment:
    """A decoded segment file."""

    supersedes: list[str]
    records: list[IndexRecord]


def is_segment_name(name: str) -> bool:
    """Segment names are 32 lowercase hex digits (16 random bytes)."""
    return bool(_NAME.match(name))


def encode_segment(records: Iterable[IndexRecord], supersedes: Iterable[str] = ()) -> bytes:
    """The bytes of a segment file listing ``records`` and retiring ``supersedes``."""
    old = [bytes.fromhex(n) for n in sorted(supersedes)]
    rows = [_RECORD.pack(*r) for r in records]
    head = _HEAD.pack(SEGMENT_MAGIC, SEGMENT_VERSION, len(old), len(rows))
    body = head + b"".join(old) + b"".join(rows)
    return body + _CRC.pack(zlib.crc32(body))


def decode_segment(data: bytes, path: Path) -> Segment:
    """The content of a segment file; raises :class:`IndexDamaged`."""
    hint = "; rebuild the index from the packs (DiskStore.rebuild_index)"
    if len(data) < _HEAD.size + _CRC.size:
        raise IndexDamaged(f"index segment {path} is too short{hint}")
    magic, version, n_old, count = _HEAD.unpack_from(data)
    if magic != SEGMENT_MAGIC:
        raise IndexDamaged(f"index segment {path} has a bad magic{hint}")
    if version != SEGMENT_VERSION:
        raise IndexDamaged(f"index segment {path} has unknown version {version}")
    records_at = _HEAD.size + n_old * _NAME_SIZE
    if len(data) != records_at + count * _RECORD.size + _CRC.size:
        raise IndexDamaged(f"index segment {path} has a wrong size for {count} records{hint}")
    if zlib.crc32(data[: -_CRC.size]) != _CRC.unpack_from(data, len(data) - _CRC.size)[0]:
        raise IndexDamaged(f"index segment {path} fails its checksum{hint}")
    old = [data[i : i + _NAME_SIZE].hex() for i in range(_HEAD.size, records_at, _NAME_SIZE)]
    body = data[records_at : -_CRC.size]
    return Segment(old, [IndexRecord(*row) for row in _RECORD.iter_unpack(body)])


def write_segment(
    index_dir: Path, name: str, records: Iterable[IndexRecord], supersedes: Iterable[str] = ()
) -> None:
    """Publish a segment atomically; once this returns, its chunks are committed."""
    data = encode_segment(records, supersedes)
    atomic_write(index_dir / f"{name}{SEGMENT_SUFFIX}", data)


def segment_names(index_dir: Path) -> set[str]:
    """Names (without suffix) of the published segments, superseded ones included."""
    names = set()
    for n in os.listdir(index_dir):
        if n.endswith(SEGMENT_SUFFIX) and is_segment_name(n[: -len(SEGMENT_SUFFIX)]):
            names.add(n[: -len(SEGMENT_SUFFIX)])
    return names


def read_segment(index_dir: Path, name: str) -> Segment | None:
    """A segment, or None when it vanished (retired by a collection)."""
    path = index_dir / f"{name}{SEGMENT_SUFFIX}"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return decode_segment(data, path)


@dataclass
class IndexSnapshot:
    """The segments of the index folder at one moment, as read from disk."""

    names: set[str] = field(default_factory=set)  # every segment file present
    segments: dict[str, Segment] = field(default_factory=dict)  # readable ones
    damaged: dict[str, str] = field(default_factory=dict)  # name -> problem

    @property
    def in_effect(self) -> list[str]:
        """Readable segments no other present segment supersedes, in name order."""
        retired = {old for seg in self.segments.values() for old in seg.supersedes}
        return sorted(n for n in self.segments if n not in retired)

    def records(self) -> list[IndexRecord]:
        """Every record of the segments in effect, duplicates included."""
        return [r for n in self.in_effect for r in self.segments[n].records]


def read_snapshot(index_dir: Path, cache: dict[str, Segment] | None = None) -> IndexSnapshot:
    """Read the index folder; damaged segments are reported, not raised.

    ``cache`` holds segments already decoded: segment files never change once
    published, so only new names are read.
    """
    snap = IndexSnapshot(names=segment_names(index_dir))
    for name in sorted(snap.names):
        if cache is not None and name in cache:
            snap.segments[name] = cache[name]
            continue
        try:
            seg = read_segment(index_dir, name)
        except IndexDamaged as exc:
            snap.damaged[name] = str(exc)
            continue
        except OSError as exc:
            snap.damaged[name] = f"index segment {name} is unreadable: {exc}"
            continue
        if seg is not None:
            snap.segments[name] = seg
    return snap


class ChunkIndex:
    """The in-memory union of the segments in effect. Thread-safe."""

    def __init__(self, index_dir: Path) -> None:
        self._dir = index_dir
        self._lock = threading.Lock()
        self._map: dict[bytes, Location] = {}
        self._segments: dict[str, Segment] = {}
        self._in_effect: set[str] = set()
        self.damaged: dict[str, str] = {}
        self._seen_mtime_ns: int | None = None
        self._listed_at_ns = 0

    def lookup(self, chunk_id: bytes) -> Location | None:
        """The location of a committed chunk known to this process, or None."""
        return self._map.get(chunk_id)

    def ids(self) -> list[bytes]:
        """A snapshot of every chunk id known to this process."""
        with self._lock:
            return list(self._map)

    def add(self, name: str, records: list[IndexRecord]) -> None:
        """Record a (non-superseding) segment this process just published."""
        with self._lock:
            for r in records:
                self._map.setdefault(r.chunk_id, Location(r.pack_id, r.offset, r.length))
            self._segments[name] = Segment([], [])
            self._in_effect.add(name)

    def refresh(self, force: bool = False) -> None:
        """Load segments published by others; drop the ones retired since.

        Without ``force`` the folder is listed only when its modification time says
        it may have changed, so a refresh on every miss stays cheap.
        """
        with self._lock:
            mtime = os.stat(self._dir).st_mtime_ns
            if not force and mtime == self._seen_mtime_ns and self._listed_at_ns - mtime > _RACY_NS:
                return
            listed_at = time.time_ns()
            snap = read_snapshot(self._dir, self._segments)
            for name, problem in snap.damaged.items():
                if name not in self.damaged:
                    log.error("%s", problem)
            self.damaged = snap.damaged
            in_effect = set(snap.in_effect)
            added = in_effect - self._in_effect
            if self._in_effect <= in_effect and not added & self._segments.keys():
                # Only new segments, read just now (the cache holds no records).
                for name in sorted(added):
                    for r in snap.segments[name].records:
                        self._map.setdefault(r.chunk_id, Location(r.pack_id, r.offset, r.length))
            else:
                # Segments were retired: locations may have moved to other packs.
                snap = read_snapshot(self._dir)
                self.damaged = snap.damaged
                in_effect = set(snap.in_effect)
                fresh: dict[bytes, Location] = {}
                for r in snap.records():
                    fresh.setdefault(r.chunk_id, Location(r.pack_id, r.offset, r.length))
                self._map = fresh
            # Keep only what decides which segments are in effect; records live in _map.
            self._segments = {n: Segment(s.supersedes, []) for n, s in snap.segments.items()}
            self._in_effect = in_effect
            self._seen_mtime_ns, self._listed_at_ns = mtime, listed_at
            self._seen_mtime_ns, self._listed_at_ns = mtime, listed_at
