"""The disk pool as a :class:`MediaStore`: sealed chunk blobs in packs, manifests, config.

The on-disk format is specified in docs/format/disk-pool.md. Several processes
may open one pool: writers share the pool lock, garbage collection and clean-up
take it alone, readers take no lock and follow moved chunks by refreshing the
index.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

from tapir.appliance.plugin_api import (
    Capacity,
    ChunkCorrupt,
    ChunkMissing,
    MediaStore,
    TapirError,
    WriteSession,
)

from .collect import collect
from .files import TMP_PREFIX, atomic_write, fsync_dir, media_full_on_no_space
from .index import ChunkIndex, IndexRecord, read_snapshot
from .layout import PoolLayout, check_layout
from .locking import PoolLock
from .packs import PackDamaged, PackEntryGone, read_entry
from .recovery import RebuildReport, clean_up, pack_files, rebuild
from .session import DiskWriteSession, check_chunk_id

log = logging.getLogger(__name__)

DEFAULT_PACK_SIZE = 32 * 1024 * 1024
DEFAULT_LOCK_TIMEOUT = 600.0
# No slash, no leading dot: a name can neither leave its folder nor look temporary.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+=-]{0,199}$")
_READ_ATTEMPTS = 3


def _check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"invalid {kind} name {name!r}: use 1-200 letters, digits and . _ : @ + = -, "
            "starting with a letter or digit"
        )
    return name


class DiskStore(MediaStore):
    """An opened disk pool folder.

    ``pack_size`` is the size at which a pack is sealed and a new one started;
    ``lock_timeout`` bounds the wait for the pool lock (seconds). Opening finishes
    or undoes operations a crash interrupted, when no other process is writing.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        pack_size: int = DEFAULT_PACK_SIZE,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    ) -> None:
        self.path = Path(path)
        self.layout: PoolLayout
        self.layout, self.marker = check_layout(self.path)
        if pack_size < 4096:
            raise ValueError(f"pack_size must be at least 4096 bytes, got {pack_size}")
        self.pack_size = pack_size
        self._lock = PoolLock(self.layout.lock, lock_timeout)
        self._index = ChunkIndex(self.layout.index)
        self._sessions: set[DiskWriteSession] = set()
        self._sessions_lock = threading.Lock()
        self._guard_exclusive = False  # this store holds the exclusive guard (gc under way)
        self.clean_up_if_idle()
        self._index.refresh(force=True)

    # Config and manifests: small files, each replaced atomically.

    def get_config(self, name: str) -> bytes | None:
        """The named config file, or None."""
        try:
            return (self.layout.config / _check_name("config", name)).read_bytes()
        except FileNotFoundError:
            return None

    def put_config(self, name: str, data: bytes) -> None:
        """Write a config file atomically (old or new content survives a crash)."""
        self._write_small(self.layout.config / _check_name("config", name), data, "config")

    def put_manifest(self, name: str, blob: bytes) -> None:
        """Store a sealed manifest atomically."""
        self._write_small(self.layout.manifests / _check_name("manifest", name), blob, "manifest")

    def get_manifest(self, name: str) -> bytes:
        """A sealed manifest; raises FileNotFoundError naming the pool."""
        try:
            return (self.layout.manifests / _check_name("manifest", name)).read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"no manifest {name!r} in disk pool {self.path}") from None

    def manifests(self) -> list[str]:
        """Names of every stored manifest, sorted."""
        return sorted(n for n in os.listdir(self.layout.manifests) if _NAME.match(n))

    def delete_manifest(self, name: str) -> None:
        """Remove a manifest; raises FileNotFoundError when there is none of that name."""
        path = self.layout.manifests / _check_name("manifest", name)
        with self._lock.shared("deleting a manifest"):
            try:
                path.unlink()
            except FileNotFoundError:
                raise FileNotFoundError(f"no manifest {name!r} in disk pool {self.path}") from None
            fsync_dir(path.parent)

    def _write_small(self, path: Path, data: bytes, kind: str) -> None:
        # The shared hold keeps the clean-up from removing our temporary file.
        with (
            self._lock.shared(f"writing {kind} {path.name}"),
            media_full_on_no_space(self.path, f"writing {kind} {path.name}"),
        ):
            atomic_write(path, bytes(data))

    # Chunks.

    def begin(self) -> WriteSession:
        """Start a write session; it holds the pool's shared lock until it ends."""
        hold = self._lock.shared("a backup")
        try:
            self._index.refresh(force=True)
            with media_full_on_no_space(self.path, "starting a write session"):
                session = DiskWriteSession(
                    self.layout, self._index, self.pack_size, hold, self._session_ended
                )
        except BaseException:
            hold.release()
            raise
        with self._sessions_lock:
            self._sessions.add(session)
        return session

    def _session_ended(self, session: DiskWriteSession) -> None:
        with self._sessions_lock:
            self._sessions.discard(session)

    def has_chunk(self, chunk_id: bytes) -> bool:
        """True when a committed chunk with this id exists (in any process's commits)."""
        check_chunk_id(chunk_id)
        if self._index.lookup(chunk_id) is not None:
            if self._sessions:
                # Our open session holds the shared lock: no collection ran since begin().
                return True
            self._index.refresh()
            if self._index.lookup(chunk_id) is not None:
                return True
        self._index.refresh()
        return self._index.lookup(chunk_id) is not None

    def get_chunk(self, chunk_id: bytes) -> bytes:
        """A committed chunk's blob as stored.

        Raises ChunkMissing when the id is unknown or its pack or entry is gone or
        cut short, and ChunkCorrupt (naming the pack) when the entry's framing is
        damaged. The payload is not judged here; the repository verifies it.
        """
        check_chunk_id(chunk_id)
        for _ in range(_READ_ATTEMPTS):
            loc = self._index.lookup(chunk_id)
            if loc is None:
                self._index.refresh(force=True)
                loc = self._index.lookup(chunk_id)
                if loc is None:
                    raise ChunkMissing(chunk_id, self._missing_detail())
            path = self.layout.pack_path(loc.pack_id)
            try:
                return read_entry(path, loc.offset, chunk_id, loc.length)
            except PackEntryGone as exc:
                gone = exc
            except PackDamaged as exc:
                raise ChunkCorrupt(chunk_id, str(exc)) from None
            except OSError as exc:
                raise TapirError(f"disk pool {self.path}: reading pack {path}: {exc}") from exc
            # A collection may have moved the chunk to a new pack since we looked.
            self._index.refresh(force=True)
            if self._index.lookup(chunk_id) == loc:
                raise ChunkMissing(chunk_id, f"{gone} (disk pool {self.path})")
        raise ChunkMissing(chunk_id, f"{gone} (disk pool {self.path})")

    def _missing_detail(self) -> str:
        detail = f"not in disk pool {self.path}"
        if self._index.damaged:
            detail += (
                f"; {len(self._index.damaged)} index segment(s) are damaged, "
                "rebuild the index (DiskStore.rebuild_index)"
            )
        return detail

    def chunk_ids(self) -> Iterator[bytes]:
        """Every committed chunk id, including those other processes committed."""
        self._index.refresh(force=True)
        return iter(self._index.ids())

    def guard(self, exclusive: bool = False) -> AbstractContextManager[object]:
        """The pool lock as the repository's guard: shared for a backup from its first
        chunk to its manifest, exclusive for garbage collection (across processes)."""
        if not exclusive:
            return self._lock.shared("a backup (until its manifest is stored)")
        return self._exclusive_guard()

    @contextmanager
    def _exclusive_guard(self) -> Iterator[None]:
        self._refuse_with_open_sessions("collect garbage")
        with self._lock.exclusive("garbage collection"):
            self._guard_exclusive = True
            try:
                yield
            finally:
                self._guard_exclusive = False

    def delete_chunks(self, chunk_ids: Iterable[bytes]) -> int:
        """Remove chunks and rewrite the packs that held them; returns bytes freed.

        Takes the exclusive pool lock: waits for running write sessions to end
        (raising PoolBusy after the lock timeout).
        """
        dead = {check_chunk_id(c) for c in chunk_ids}
        if not dead:
            return 0
        self._refuse_with_open_sessions("collect garbage")
        with (
            nullcontext() if self._guard_exclusive else self._lock.exclusive("garbage collection"),
            media_full_on_no_space(self.path, "collecting garbage (rewriting packs)"),
        ):
            clean_up(self.layout)
            freed = collect(self.layout, dead, self.pack_size)
        self._index.refresh(force=True)
        return freed

    # Maintenance.

    def rebuild_index(self, deep: bool = False) -> RebuildReport:
        """Recreate the chunk index from the packs alone (disaster recovery).

        Uses each pack's table, or walks its entries when the table is damaged or
        ``deep`` is set (which also checks every payload checksum). The clean-up
        that runs first removes packs of commits a crash cut short, so the result
        is the index in effect, rebuilt.
        """
        self._refuse_with_open_sessions("rebuild the index")
        with (
            self._lock.exclusive("rebuilding the index"),
            media_full_on_no_space(self.path, "rebuilding the index"),
        ):
            clean_up(self.layout)
            report = rebuild(self.layout, deep=deep)
        self._index.refresh(force=True)
        for problem in report.problems:
            log.warning("disk pool %s: %s", self.path, problem)
        return report

    def index_records(self) -> list[IndexRecord]:
        """Every record of the index in effect on disk, sorted (for checks and tests)."""
        return sorted(read_snapshot(self.layout.index).records())

    def clean_up_if_idle(self) -> bool:
        """Finish or undo interrupted operations if no other writer is active right now.

        Returns True when the clean-up ran. Garbage collection always runs it.
        """
        hold = self._lock.try_exclusive()
        if hold is None:
            return False
        with hold:
            try:
                clean_up(self.layout)
            except OSError as exc:
                log.warning("disk pool %s: clean-up left work for later: %s", self.path, exc)
                return False
        return True

    def capacity(self) -> Capacity:
        """The file system's size and free space; ``used`` is the bytes in pack files."""
        st = os.statvfs(self.path)
        used = 0
        for _, path in pack_files(self.layout):
            try:
                used += path.stat().st_size
            except FileNotFoundError:
                continue
        return Capacity(total=st.f_blocks * st.f_frsize, used=used, free=st.f_bavail * st.f_frsize)

    def temporary_files(self) -> list[Path]:
        """Leftovers of unfinished writes (empty once a clean-up ran with no writer active)."""
        found = list(self.layout.tmp.iterdir())
        for folder in (self.layout.config, self.layout.manifests, self.layout.index):
            found += [folder / n for n in os.listdir(folder) if n.startswith(TMP_PREFIX)]
        return sorted(found)

    def _refuse_with_open_sessions(self, what: str) -> None:
        with self._sessions_lock:
            if self._sessions:
                raise TapirError(
                    f"cannot {what} on disk pool {self.path}: this process still has "
                    f"{len(self._sessions)} write session(s) open; commit or abort them first"
                )

    def close(self) -> None:
        """Abort write sessions still open (their chunks were never committed)."""
        with self._sessions_lock:
            sessions = list(self._sessions)
        for s in sessions:
            s.abort()
