"""A pool's content-addressed store, as the engine uses it.

The repository sits between the engine and a media plugin's MediaStore. It owns
what the design's data path puts in the core: content ids (BLAKE3, keyed when the
pool is encrypted), compression (zstd), authenticated encryption (AES-256-GCM),
deduplication against the pool, manifests, verification and garbage collection.
The medium only stores opaque sealed blobs.

Concurrency: garbage collection must not run while a backup writes to the same pool
(a backup may deduplicate against, or commit, chunks that no manifest references yet).
The engine serialises them with its pool lock.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgpack

from ..plugin_api.context import ProgressReporter
from ..plugin_api.errors import ChunkCorrupt, TapirError
from ..plugin_api.items import Item
from ..plugin_api.roles import MediaStore, WriteSession
from .blobs import BlobSealer, Compression
from .chunker import DISK_CHUNK_SIZE, FILE_CHUNKER, ITEM_STREAM_CHUNKER, ChunkerParams
from .hashing import ID_LENGTH, chunk_id_function
from .itemcodec import iter_item_stream
from .keys import PoolKeys, key_fingerprint
from .manifest import Manifest

#: Name of the medium's config file that describes the repository format.
CONFIG_NAME = "repository"
FORMAT_NAME = "tapir-repository"
REPOSITORY_VERSION = 1


@dataclass
class StoredChunk:
    id: bytes
    length: int  # plain length
    sealed_length: int  # bytes added to the medium (0 when deduplicated)
    new: bool


@dataclass
class VerifyProblem:
    chunk_id: bytes | None
    message: str
    recovery_points: list[str] = field(default_factory=list)  # affected points
    paths: list[str] = field(default_factory=list)  # affected items (decoded for display)


@dataclass
class VerifyReport:
    chunks_checked: int = 0
    bytes_checked: int = 0
    manifests_checked: int = 0
    problems: list[VerifyProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class GcReport:
    chunks_total: int = 0
    chunks_unreferenced: int = 0
    bytes_reclaimed: int = 0
    dry_run: bool = False


class ChunkWriter:
    """Writes deduplicated chunks during one backup; wraps a medium's WriteSession."""

    def __init__(self, repo: Repository, session: WriteSession) -> None:
        self._repo = repo
        self._session = session
        self._lock = threading.Lock()
        # Ids put in this session or known to be on the medium already.
        self._known: set[bytes] = set()
        self._state = "open"
        self.chunks_new = 0
        self.chunks_dedup = 0
        self.bytes_new = 0  # sealed bytes put
        self.bytes_plain_new = 0

    def store(self, data: bytes | memoryview) -> StoredChunk:
        """Hash, dedup, compress, encrypt and put one chunk. Thread-safe; blocking."""
        if self._state != "open":
            raise TapirError(f"this chunk writer is {self._state}")
        length = len(data)
        cid = self._repo.chunk_id(data)
        with self._lock:
            seen = cid in self._known
        if not seen and self._repo.store.has_chunk(cid):
            seen = True
        with self._lock:
            if seen or cid in self._known:
                self._known.add(cid)
                self.chunks_dedup += 1
                return StoredChunk(cid, length, 0, False)
            # Claim the id so a concurrent store of the same data dedups against us.
            self._known.add(cid)
        try:
            blob = self._repo.sealer.seal(data, cid)
            self._session.put_chunk(cid, blob)
        except BaseException:
            with self._lock:
                self._known.discard(cid)
            raise
        with self._lock:
            self.chunks_new += 1
            self.bytes_new += len(blob)
            self.bytes_plain_new += length
        return StoredChunk(cid, length, len(blob), True)

    def is_known(self, chunk_id: bytes) -> bool:
        """True when ``chunk_id`` was stored in this session or exists on the medium."""
        with self._lock:
            if chunk_id in self._known:
                return True
        if self._repo.store.has_chunk(chunk_id):
            with self._lock:
                self._known.add(chunk_id)
            return True
        return False

    def commit(self) -> None:
        """Make every chunk stored so far durable (the caller then writes the manifest)."""
        if self._state != "open":
            raise TapirError(f"this chunk writer is {self._state}")
        self._session.commit()
        self._state = "committed"

    def abort(self) -> None:
        """Drop the session's chunks; idempotent, a no-op after commit."""
        if self._state == "open":
            self._state = "aborted"
            self._session.abort()


class Repository:
    """One opened pool."""

    store: MediaStore
    keys: PoolKeys | None
    compression: str  # "zstd:3", "zstd:1", "none"

    def __init__(
        self,
        store: MediaStore,
        *,
        keys: PoolKeys | None,
        compression: str,
        file_chunker: ChunkerParams = FILE_CHUNKER,
        item_chunker: ChunkerParams = ITEM_STREAM_CHUNKER,
        disk_chunk_size: int = DISK_CHUNK_SIZE,
        pool_id: str = "",
    ) -> None:
        """Use :meth:`initialize` or :meth:`open`; this only wires the parts together."""
        self.store = store
        self.keys = keys
        self.compression = str(Compression.parse(compression))
        self.file_chunker = file_chunker
        self.item_chunker = item_chunker
        self.disk_chunk_size = disk_chunk_size
        self.pool_id = pool_id
        self._id_fn = chunk_id_function(keys.id_key if keys else None)
        self.sealer = BlobSealer(
            compression=Compression.parse(compression),
            enc_key=keys.enc_key if keys else None,
            chunk_id=self._id_fn,
        )

    @property
    def encrypted(self) -> bool:
        """True when the pool's chunks are encrypted."""
        return self.keys is not None

    @classmethod
    def initialize(
        cls,
        store: MediaStore,
        *,
        master_key: bytes,
        encrypted: bool,
        compression: str = "zstd:3",
        file_chunker: ChunkerParams = FILE_CHUNKER,
        item_chunker: ChunkerParams = ITEM_STREAM_CHUNKER,
        disk_chunk_size: int = DISK_CHUNK_SIZE,
    ) -> Repository:
        """Write the format description and (wrapped) keys to an empty medium."""
        if store.get_config(CONFIG_NAME) is not None:
            raise TapirError("this medium already holds a Tapir repository; refusing to overwrite")
        if store.manifests() or next(iter(store.chunk_ids()), None) is not None:
            raise TapirError("this medium is not empty (it holds chunks or manifests)")
        Compression.parse(compression)
        if not 64 * 1024 <= disk_chunk_size <= 64 * 1024 * 1024:
            raise TapirError("disk chunk size must be between 64 KiB and 64 MiB")
        keys = PoolKeys.generate() if encrypted else None
        config: dict[str, Any] = {
            "format": FORMAT_NAME,
            "version": REPOSITORY_VERSION,
            "pool_id": uuid.uuid4().hex,
            "created_at": datetime.now(UTC).isoformat(),
            "id_hash": "blake3-keyed" if encrypted else "blake3",
            "compression": str(Compression.parse(compression)),
            "encrypted": encrypted,
            "file_chunker": file_chunker.as_dict(),
            "item_chunker": item_chunker.as_dict(),
            "disk_chunk_size": disk_chunk_size,
            "keys": keys.wrap(master_key) if keys else None,
            "key_check": keys.check_value() if keys else None,
        }
        store.put_config(CONFIG_NAME, _pack(config))
        return cls.open(store, master_key=master_key)

    @classmethod
    def open(cls, store: MediaStore, *, master_key: bytes) -> Repository:
        """Open an initialised medium; raises TapirError if the key cannot unwrap."""
        config = read_config(store)
        keys = None
        if config["encrypted"]:
            keys = PoolKeys.unwrap(config["keys"], master_key)
            if keys.check_value() != config.get("key_check"):
                raise TapirError("the unwrapped keys do not match this pool's key check value")
        return cls(
            store,
            keys=keys,
            compression=config["compression"],
            file_chunker=ChunkerParams.from_dict(config["file_chunker"]),
            item_chunker=ChunkerParams.from_dict(config["item_chunker"]),
            disk_chunk_size=int(config["disk_chunk_size"]),
            pool_id=str(config.get("pool_id", "")),
        )

    @property
    def key_fingerprint(self) -> str | None:
        """The pool keys' public fingerprint (None when the pool is not encrypted)."""
        return self.keys.fingerprint() if self.keys is not None else None

    def chunk_id(self, data: bytes | memoryview) -> bytes:
        """The content id of ``data`` in this pool."""
        return self._id_fn(data)

    def writer(self) -> ChunkWriter:
        """A chunk writer over a new write session of the medium."""
        return ChunkWriter(self, self.store.begin())

    def load_chunk(self, chunk_id: bytes) -> bytes:
        """Plain data, verified; raises ChunkMissing / ChunkCorrupt."""
        blob = self.store.get_chunk(chunk_id)
        return self.sealer.unseal(blob, chunk_id)

    # Manifests: stored as content id (32 bytes) + a blob sealed under that id.

    def write_manifest(self, manifest: Manifest) -> None:
        """Seal and store ``manifest`` under its id; the commit point of a backup."""
        plain = manifest.encode()
        cid = self.chunk_id(plain)
        self.store.put_manifest(manifest.id, cid + self.sealer.seal(plain, cid))

    def read_manifest(self, recovery_point_id: str) -> Manifest:
        """Read, verify and decode a manifest; TapirError when damaged, FileNotFoundError
        when absent."""
        blob = self.store.get_manifest(recovery_point_id)
        if len(blob) <= ID_LENGTH:
            raise TapirError(f"manifest {recovery_point_id} is truncated")
        cid = blob[:ID_LENGTH]
        try:
            plain = self.sealer.unseal(blob[ID_LENGTH:], cid)
        except ChunkCorrupt as exc:
            raise TapirError(f"manifest {recovery_point_id} is damaged: {exc}") from None
        try:
            manifest = Manifest.decode(plain)
        except ValueError as exc:
            raise TapirError(f"manifest {recovery_point_id}: {exc}") from None
        if manifest.id != recovery_point_id:
            raise TapirError(
                f"manifest stored as {recovery_point_id} names recovery point {manifest.id}"
            )
        return manifest

    def delete_manifest(self, recovery_point_id: str) -> None:
        """Remove a recovery point's manifest; its chunks go at the next gc."""
        self.store.delete_manifest(recovery_point_id)

    def manifest_ids(self) -> list[str]:
        """Every recovery point stored on the medium, sorted."""
        return sorted(self.store.manifests())

    def iter_items(self, manifest: Manifest) -> Iterator[Item]:
        """The items of a recovery point in stored order, decoded lazily."""
        return iter_item_stream(self.load_chunk(cid) for cid in manifest.item_stream)

    def referenced_chunks(self, manifest: Manifest) -> set[bytes]:
        """Every chunk id ``manifest`` needs: item stream and item data."""
        ids = set(manifest.item_stream)
        for item in self.iter_items(manifest):
            ids.update(ref.id for ref in item.chunks if ref.id is not None)
        return ids

    def verify(
        self,
        recovery_point_ids: Iterable[str] | None = None,
        progress: ProgressReporter | None = None,
        check_canceled: Callable[[], None] | None = None,
    ) -> VerifyReport:
        """Re-read and re-hash every chunk the given points (default: all) reference,
        plus, when verifying the whole pool, every stored chunk."""
        from .verify import Verifier  # one job per module: the walk lives there

        return Verifier(self, progress, check_canceled).run(recovery_point_ids)

    def gc(self, dry_run: bool = False) -> GcReport:
        """Delete chunks no manifest references.

        Refuses (TapirError) when any manifest or item stream cannot be read, since the
        chunks it references would then be unknown. A dry run reads the unreferenced
        blobs to count their size.
        """
        with self.store.guard(exclusive=True):
            return self._gc(dry_run)

    def _gc(self, dry_run: bool) -> GcReport:
        # Under the exclusive guard no backup is between its first chunk and its
        # manifest; listing chunks before manifests still keeps the order safe for
        # media without a guard.
        stored = list(self.store.chunk_ids())
        referenced: set[bytes] = set()
        for name in self.manifest_ids():
            try:
                referenced |= self.referenced_chunks(self.read_manifest(name))
            except (TapirError, FileNotFoundError) as exc:
                raise TapirError(
                    f"garbage collection refused: recovery point {name} cannot be read ({exc})"
                ) from None
        unreferenced = [cid for cid in stored if cid not in referenced]
        report = GcReport(
            chunks_total=len(stored), chunks_unreferenced=len(unreferenced), dry_run=dry_run
        )
        if dry_run:
            report.bytes_reclaimed = sum(len(self.store.get_chunk(c)) for c in unreferenced)
        elif unreferenced:
            report.bytes_reclaimed = self.store.delete_chunks(unreferenced)
        return report

    def export_key(self, passphrase: str) -> bytes:
        """The pool keys protected by a passphrase, for disaster recovery."""
        if self.keys is None:
            raise TapirError("this pool is not encrypted: it has no key to export")
        return self.keys.export(passphrase)

    @staticmethod
    def import_key(
        store: MediaStore, exported: bytes, passphrase: str, *, master_key: bytes
    ) -> None:
        """Re-wrap an exported key with this appliance's master key and store it on the medium."""
        config = read_config(store)
        if not config["encrypted"]:
            raise TapirError("this pool is not encrypted: there is no key to import")
        keys = PoolKeys.from_export(exported, passphrase)
        if keys.check_value() != config.get("key_check"):
            raise TapirError("this key export belongs to another pool")
        config["keys"] = keys.wrap(master_key)
        store.put_config(CONFIG_NAME, _pack(config))


def _pack(doc: dict[str, Any]) -> bytes:
    return msgpack.packb(doc, use_bin_type=True)


_CONFIG_KEYS = (
    "format",
    "version",
    "compression",
    "encrypted",
    "file_chunker",
    "item_chunker",
    "disk_chunk_size",
    "keys",
)


def config_key_fingerprint(config: dict[str, Any]) -> str | None:
    """The key fingerprint a repository config describes, without unwrapping any key.

    None for a pool that is not encrypted; TapirError when an encrypted pool's
    config lacks a valid key check value.
    """
    if not config.get("encrypted"):
        return None
    check = config.get("key_check")
    if not isinstance(check, bytes):
        raise TapirError("the repository config of this encrypted pool has no key check value")
    return key_fingerprint(check)


def read_config(store: MediaStore) -> dict[str, Any]:
    """The repository description a medium holds (format, chunker, compression, wrapped keys)."""
    data = store.get_config(CONFIG_NAME)
    if data is None:
        raise TapirError("this medium holds no Tapir repository (not initialised)")
    try:
        config = msgpack.unpackb(data, raw=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise TapirError(f"the repository config is damaged: {exc}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT_NAME:
        raise TapirError("the medium's repository config is not a Tapir repository")
    if config.get("version") != REPOSITORY_VERSION:
        raise TapirError(
            f"repository format version {config.get('version')!r} is not supported "
            f"(this Tapir reads version {REPOSITORY_VERSION})"
        )
    missing = [k for k in _CONFIG_KEYS if k not in config]
    if missing:
        raise TapirError(f"the repository config lacks {', '.join(missing)}")
    return config
