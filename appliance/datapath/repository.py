"""A pool's content-addressed store, as the engine uses it.

The repository sits between the engine and a media plugin's MediaStore. It owns
what the design's data path puts in the core: content ids (BLAKE3, keyed when the
pool is encrypted), compression (zstd), authenticated encryption (AES-256-GCM),
deduplication against the pool, manifests, verification and garbage collection.
The medium only stores opaque sealed blobs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from ..plugin_api.context import ProgressReporter
from ..plugin_api.items import Item
from ..plugin_api.roles import MediaStore
from .keys import PoolKeys
from .manifest import Manifest


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

    def store(self, data: bytes) -> StoredChunk:
        """Hash, dedup, compress, encrypt and put one chunk. Thread-safe; blocking."""
        raise NotImplementedError

    def commit(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError


class Repository:
    """One opened pool."""

    store: MediaStore
    keys: PoolKeys | None
    compression: str  # "zstd:3", "zstd:1", "none"

    @classmethod
    def initialize(
        cls, store: MediaStore, *, master_key: bytes, encrypted: bool, compression: str = "zstd:3"
    ) -> Repository:
        """Write the format description and (wrapped) keys to an empty medium."""
        raise NotImplementedError

    @classmethod
    def open(cls, store: MediaStore, *, master_key: bytes) -> Repository:
        """Open an initialised medium; raises TapirError if the key cannot unwrap."""
        raise NotImplementedError

    def chunk_id(self, data: bytes) -> bytes:
        raise NotImplementedError

    def writer(self) -> ChunkWriter:
        raise NotImplementedError

    def load_chunk(self, chunk_id: bytes) -> bytes:
        """Plain data, verified; raises ChunkMissing / ChunkCorrupt."""
        raise NotImplementedError

    def write_manifest(self, manifest: Manifest) -> None:
        raise NotImplementedError

    def read_manifest(self, recovery_point_id: str) -> Manifest:
        raise NotImplementedError

    def delete_manifest(self, recovery_point_id: str) -> None:
        raise NotImplementedError

    def manifest_ids(self) -> list[str]:
        raise NotImplementedError

    def iter_items(self, manifest: Manifest) -> Iterator[Item]:
        raise NotImplementedError

    def verify(
        self,
        recovery_point_ids: Iterable[str] | None = None,
        progress: ProgressReporter | None = None,
        check_canceled: Callable[[], None] | None = None,
    ) -> VerifyReport:
        """Re-read and re-hash every chunk the given points (default: all) reference,
        plus, when verifying the whole pool, every stored chunk."""
        raise NotImplementedError

    def gc(self, dry_run: bool = False) -> GcReport:
        """Delete chunks no manifest references."""
        raise NotImplementedError

    def export_key(self, passphrase: str) -> bytes:
        """The pool keys protected by a passphrase, for disaster recovery."""
        raise NotImplementedError

    @staticmethod
    def import_key(
        store: MediaStore, exported: bytes, passphrase: str, *, master_key: bytes
    ) -> None:
        """Re-wrap an exported key with this appliance's master key and store it on the medium."""
        raise NotImplementedError
