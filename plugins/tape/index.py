"""The tape pool's index: where every chunk, manifest and config is, in one SQLite file.

The index lives under ``ctx.state_dir / "pools" / <pool>`` and answers the
engine's questions without loading a tape: has this media set a chunk
(deduplication), which volume, tape file and offset hold a chunk, the
manifests and configs of the pool (kept whole: they are small), the media sets
and the catalog records of every volume's files (from which each session's
on-tape catalog is written). It holds only what is already on tape: rows are
added after the tape file they describe has its filemark. Everything in it can
be rebuilt from the tapes (:meth:`TapeIndex.rebuild_from`).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import msgpack

from .format import CatalogRecord, FileKind, VolumeCatalog

#: Manifest archives also carry the pool's config files, under this name prefix,
#: so that a rebuild from tapes alone gets the repository config and wrapped keys.
CONFIG_ENTRY_PREFIX = "config:"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS media_sets (
    uuid TEXT PRIMARY KEY, pool TEXT NOT NULL, created_at TEXT NOT NULL,
    sealed INTEGER NOT NULL DEFAULT 0, expired INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS chunks (
    id BLOB NOT NULL, media_set TEXT NOT NULL, volume TEXT NOT NULL,
    file INTEGER NOT NULL, offset INTEGER NOT NULL, PRIMARY KEY (id, media_set));
CREATE TABLE IF NOT EXISTS manifests (
    name TEXT PRIMARY KEY, media_set TEXT NOT NULL, volume TEXT NOT NULL,
    file INTEGER NOT NULL, offset INTEGER NOT NULL, blob BLOB NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS configs (name TEXT PRIMARY KEY, blob BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    volume TEXT NOT NULL, file INTEGER NOT NULL, record BLOB NOT NULL,
    PRIMARY KEY (volume, file));
"""


def config_entry_name(name: str) -> str:
    """The manifest-archive entry name that carries config file ``name``."""
    return CONFIG_ENTRY_PREFIX + name


def split_entry_name(entry: str) -> tuple[str, str]:
    """("config", name) for a config entry, ("manifest", name) for a recovery point."""
    if entry.startswith(CONFIG_ENTRY_PREFIX):
        return "config", entry[len(CONFIG_ENTRY_PREFIX) :]
    return "manifest", entry


@dataclass(frozen=True)
class ChunkLocation:
    """Where a chunk's entry is: media set, volume barcode, tape file, stream offset."""

    media_set: str
    volume: str
    file: int
    offset: int


@dataclass(frozen=True)
class MediaSetRow:
    """A media set of the pool."""

    uuid: str
    pool: str
    created_at: str
    sealed: bool
    expired: bool


class TapeIndex:
    """The SQLite index of one tape pool. Thread-safe; several processes may share it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            self.path, timeout=60, check_same_thread=False, isolation_level=None
        )
        self._lock = threading.RLock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def _tx(self) -> _Tx:
        return _Tx(self)

    def _all(self, sql: str, *args: object) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _one(self, sql: str, *args: object) -> tuple | None:
        with self._lock:
            return self._db.execute(sql, args).fetchone()

    # --- media sets ---------------------------------------------------------

    def add_media_set(self, uuid: str, pool: str, created_at: str) -> None:
        """Record a new media set (when its first volume gets its media-set label)."""
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO media_sets (uuid, pool, created_at) VALUES (?, ?, ?)",
                (uuid, pool, created_at),
            )

    def media_sets(self) -> list[MediaSetRow]:
        """Every media set, oldest first."""
        rows = self._all(
            "SELECT uuid, pool, created_at, sealed, expired FROM media_sets "
            "ORDER BY created_at, rowid"
        )
        return [MediaSetRow(u, p, c, bool(s), bool(e)) for u, p, c, s, e in rows]

    def current_media_set(self) -> MediaSetRow | None:
        """The newest media set that is neither sealed nor expired, if any."""
        open_sets = [m for m in self.media_sets() if not m.sealed and not m.expired]
        return open_sets[-1] if open_sets else None

    def seal_media_set(self, uuid: str) -> None:
        """No more sessions append to this media set."""
        with self._tx() as db:
            db.execute("UPDATE media_sets SET sealed = 1 WHERE uuid = ?", (uuid,))

    def expire_media_set(self, uuid: str) -> list[str]:
        """Forget the set's chunks and manifests (retention ended); returns the manifest names."""
        with self._tx() as db:
            names = [
                r[0]
                for r in db.execute(
                    "SELECT name FROM manifests WHERE media_set = ? AND deleted = 0", (uuid,)
                )
            ]
            db.execute("UPDATE media_sets SET sealed = 1, expired = 1 WHERE uuid = ?", (uuid,))
            db.execute("DELETE FROM chunks WHERE media_set = ?", (uuid,))
            db.execute("DELETE FROM manifests WHERE media_set = ?", (uuid,))
        return names

    # --- chunks -------------------------------------------------------------

    def record_chunks(
        self, media_set: str, volume: str, file: int, entries: Iterable[tuple[bytes, int]]
    ) -> None:
        """Record the chunks of one archive part (its tape file has its filemark)."""
        with self._tx() as db:
            db.executemany(
                "INSERT OR IGNORE INTO chunks (id, media_set, volume, file, offset) "
                "VALUES (?, ?, ?, ?, ?)",
                ((bytes(cid), media_set, volume, file, off) for cid, off in entries),
            )

    def has_chunk(self, chunk_id: bytes, media_set: str) -> bool:
        """The chunk is on ``media_set`` (deduplication is within one set)."""
        row = self._one(
            "SELECT 1 FROM chunks WHERE id = ? AND media_set = ?", bytes(chunk_id), media_set
        )
        return row is not None

    def chunk_location(self, chunk_id: bytes) -> ChunkLocation | None:
        """Where the chunk is; the newest media set holding it when there are several."""
        row = self._one(
            "SELECT c.media_set, c.volume, c.file, c.offset FROM chunks c "
            "JOIN media_sets m ON m.uuid = c.media_set WHERE c.id = ? AND m.expired = 0 "
            "ORDER BY m.created_at DESC, m.rowid DESC LIMIT 1",
            bytes(chunk_id),
        )
        return None if row is None else ChunkLocation(*row)

    def chunk_ids(self) -> Iterator[bytes]:
        """Every chunk id the pool holds, once, in tape order (volume, file, offset).

        Tape order lets a whole-pool verify read each archive as one stream.
        """
        seen: set[bytes] = set()
        for (cid,) in self._all("SELECT id FROM chunks ORDER BY volume, file, offset"):
            key = bytes(cid)
            if key not in seen:
                seen.add(key)
                yield key

    # --- manifests and configs ---------------------------------------------

    def put_manifest(
        self, name: str, media_set: str, volume: str, file: int, offset: int, blob: bytes
    ) -> None:
        """Record a manifest written to tape (replacing an older copy of the same name)."""
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO manifests (name, media_set, volume, file, offset, blob, "
                "deleted) VALUES (?, ?, ?, ?, ?, ?, 0)",
                (name, media_set, volume, file, offset, bytes(blob)),
            )

    def get_manifest(self, name: str) -> bytes:
        """A manifest's blob; FileNotFoundError when absent or deleted."""
        row = self._one("SELECT blob FROM manifests WHERE name = ? AND deleted = 0", name)
        if row is None:
            raise FileNotFoundError(f"no manifest {name!r} in this tape pool")
        return bytes(row[0])

    def manifest_location(self, name: str) -> ChunkLocation | None:
        """Where a manifest's entry is on tape."""
        row = self._one(
            "SELECT media_set, volume, file, offset FROM manifests WHERE name = ?", name
        )
        return None if row is None else ChunkLocation(*row)

    def manifest_names(self) -> list[str]:
        """Names of the manifests not deleted, sorted."""
        return [
            r[0] for r in self._all("SELECT name FROM manifests WHERE deleted = 0 ORDER BY name")
        ]

    def delete_manifest(self, name: str) -> None:
        """Mark a manifest deleted (the tape keeps it until its media set expires)."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE manifests SET deleted = 1 WHERE name = ? AND deleted = 0", (name,)
            )
            if cur.rowcount == 0:
                raise FileNotFoundError(f"no manifest {name!r} in this tape pool")

    def put_config(self, name: str, blob: bytes) -> None:
        """Store a config file (it reaches tape with the next manifest archive)."""
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO configs (name, blob) VALUES (?, ?)", (name, bytes(blob))
            )

    def get_config(self, name: str) -> bytes | None:
        """A config file, or None."""
        row = self._one("SELECT blob FROM configs WHERE name = ?", name)
        return None if row is None else bytes(row[0])

    def configs(self) -> dict[str, bytes]:
        """Every config file by name."""
        return {n: bytes(b) for n, b in self._all("SELECT name, blob FROM configs ORDER BY name")}

    # --- volume files ---------------------------------------------------------

    def record_file(self, volume: str, record: CatalogRecord) -> None:
        """Record one tape file of a volume (written, with its filemark)."""
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO files (volume, file, record) VALUES (?, ?, ?)",
                (volume, record.file_number, record.encode()),
            )

    def volume_records(self, volume: str) -> list[CatalogRecord]:
        """The records of every known tape file of a volume, in file order."""
        rows = self._all("SELECT record FROM files WHERE volume = ? ORDER BY file", volume)
        return [
            CatalogRecord.from_map(msgpack.unpackb(r[0], raw=False, strict_map_key=True))
            for r in rows
        ]

    def forget_volume(self, volume: str) -> None:
        """Drop a volume's file records and chunk rows (it is being relabelled)."""
        with self._tx() as db:
            db.execute("DELETE FROM files WHERE volume = ?", (volume,))
            db.execute("DELETE FROM chunks WHERE volume = ?", (volume,))

    # --- rebuild ----------------------------------------------------------------

    def rebuild_from(
        self,
        catalogs: Mapping[str, VolumeCatalog],
        manifests: Mapping[str, bytes],
        configs: Mapping[str, bytes],
        *,
        pool: str,
        set_created: Mapping[str, str] | None = None,
    ) -> None:
        """Replace the whole index with what the tapes say.

        ``catalogs`` maps each volume's barcode to its last on-tape catalog;
        ``manifests`` and ``configs`` are the entries read from the manifest
        archives (split with :func:`split_entry_name`); ``set_created`` gives a
        media set's creation time from its media-set label (else the oldest
        catalog time). Every media set but the newest is sealed.
        """
        explicit = dict(set_created or {})
        created: dict[str, str] = {}
        with self._tx() as db:
            for table in ("media_sets", "chunks", "manifests", "configs", "files"):
                db.execute(f"DELETE FROM {table}")
            for barcode, cat in catalogs.items():
                head = cat.header
                ms = head.media_set or ""
                created[ms] = explicit.get(ms) or min(
                    created.get(ms, head.created_at), head.created_at
                )
                records = [*cat.records, CatalogRecord.for_file(head.file_number, head)]
                for rec in records:
                    db.execute(
                        "INSERT OR REPLACE INTO files (volume, file, record) VALUES (?, ?, ?)",
                        (barcode, rec.file_number, rec.encode()),
                    )
                    db.executemany(
                        "INSERT OR IGNORE INTO chunks (id, media_set, volume, file, offset) "
                        "VALUES (?, ?, ?, ?, ?)",
                        ((cid, ms, barcode, rec.file_number, off) for cid, off in rec.chunks),
                    )
                    if rec.kind != FileKind.MANIFEST_ARCHIVE:
                        continue
                    for name, off in rec.manifests:
                        kind, plain = split_entry_name(name)
                        if kind == "manifest" and plain in manifests:
                            db.execute(
                                "INSERT OR REPLACE INTO manifests (name, media_set, volume, "
                                "file, offset, blob, deleted) VALUES (?, ?, ?, ?, ?, ?, 0)",
                                (plain, ms, barcode, rec.file_number, off, bytes(manifests[plain])),
                            )
            newest = max(created.items(), key=lambda kv: kv[1])[0] if created else None
            for ms, at in created.items():
                db.execute(
                    "INSERT INTO media_sets (uuid, pool, created_at, sealed) VALUES (?, ?, ?, ?)",
                    (ms, pool, at, int(ms != newest)),
                )
            for name, blob in configs.items():
                db.execute(
                    "INSERT OR REPLACE INTO configs (name, blob) VALUES (?, ?)", (name, bytes(blob))
                )


class _Tx:
    """One write transaction (BEGIN IMMEDIATE), serialised within the process."""

    def __init__(self, index: TapeIndex) -> None:
        self.index = index

    def __enter__(self) -> sqlite3.Connection:
        self.index._lock.acquire()
        try:
            self.index._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.index._lock.release()
            raise
        return self.index._db

    def __exit__(self, exc_type: object, *exc: object) -> None:
        try:
            self.index._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
        finally:
            self.index._lock.release()
