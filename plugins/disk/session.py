"""A write session: chunks go to packs in the session's own folder under ``tmp/``.

Nothing the session writes can be found before :meth:`DiskWriteSession.commit`
publishes its index segment. The session holds the pool's shared lock from start
to end, so a garbage collection never runs while it may still rely on a chunk it
found already stored.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from tapir.appliance.plugin_api import TapirError, WriteSession

from .files import fsync_dir, make_dir, media_full_on_no_space
from .index import ChunkIndex, IndexRecord, write_segment
from .journal import Journal, resolve, write_journal
from .layout import PoolLayout
from .locking import LockHold
from .packs import (
    CHUNK_ID_SIZE,
    ENTRY_HEADER_SIZE,
    MAX_BLOB,
    PACK_ID_SIZE,
    PackWriter,
    encode_entry_header,
)

log = logging.getLogger(__name__)


def check_chunk_id(chunk_id: object) -> bytes:
    """A chunk id must be 32 bytes; anything else is a caller's bug, reported clearly."""
    if not isinstance(chunk_id, bytes) or len(chunk_id) != CHUNK_ID_SIZE:
        shown = len(chunk_id) if isinstance(chunk_id, bytes | bytearray) else type(chunk_id)
        raise ValueError(f"a chunk id is {CHUNK_ID_SIZE} bytes, got {shown!r}")
    return chunk_id


class DiskWriteSession(WriteSession):
    """Chunks written during one backup into a disk pool. ``put_chunk`` is thread-safe."""

    def __init__(
        self,
        layout: PoolLayout,
        index: ChunkIndex,
        pack_size: int,
        hold: LockHold,
        on_end: Callable[[DiskWriteSession], None],
    ) -> None:
        self.id = secrets.token_hex(16)
        self._layout = layout
        self._index = index
        self._pack_size = pack_size
        self._hold = hold
        self._on_end = on_end
        self._lock = threading.Lock()
        self._dir = layout.tmp / self.id
        self._current: PackWriter | None = None
        self._sealed: list[PackWriter] = []
        self._ids: set[bytes] = set()
        self._state = "open"
        self._failure = ""
        make_dir(self._dir)

    @property
    def state(self) -> str:
        """open, committed, aborted or failed."""
        return self._state

    def put_chunk(self, chunk_id: bytes, blob: bytes) -> None:
        """Append one sealed blob to the session's current pack (a new one when full).

        Only the append itself holds the session's lock: the entry's checksum is
        computed before, and the fsync of a pack this call filled runs after it, so
        other threads keep appending to the next pack meanwhile.
        """
        check_chunk_id(chunk_id)
        if len(blob) > MAX_BLOB:
            raise ValueError(f"a blob is at most {MAX_BLOB} bytes, got {len(blob)}")
        header = encode_entry_header(chunk_id, blob)
        with self._lock:
            self._check_open("put a chunk")
            if chunk_id in self._ids:
                return
            try:
                with self._errors(f"writing chunk {chunk_id.hex()}"):
                    pack, full = self._pack_for(len(blob))
                    pack.append(chunk_id, blob, header)
            except BaseException as exc:
                self._fail(exc)
                raise
            self._ids.add(chunk_id)
        if full is not None:
            self._sync(full)

    def _sync(self, pack: PackWriter) -> None:
        try:
            with self._errors(f"writing pack {pack.path.name}"):
                pack.sync()
        except BaseException as exc:
            with self._lock:
                if self._state == "open":
                    self._fail(exc)
            raise

    def _pack_for(self, length: int) -> tuple[PackWriter, PackWriter | None]:
        """The pack to append to, and the pack just sealed to make room (to be synced)."""
        current = self._current
        full = None
        if current is not None and current.entries:
            table_growth = 44 * (len(current.entries) + 1)
            if current.size + ENTRY_HEADER_SIZE + length + table_growth > self._pack_size:
                current.seal()
                self._sealed.append(current)
                full, current = current, None
        if current is None:
            pack_id = secrets.token_bytes(PACK_ID_SIZE)
            current = PackWriter(self._dir / f"{pack_id.hex()}.pack", pack_id)
            self._current = current
        return current, full

    def commit(self) -> None:
        """Seal and fsync the packs, move them into ``packs/``, then publish the segment."""
        with self._lock:
            self._check_open("commit")
            try:
                with self._errors("committing"):
                    records = self._publish()
            except BaseException as exc:
                self._fail(exc)
                raise
            self._index.add(self.id, records)
            self._state = "committed"
            try:
                resolve(self._layout, self._dir)
            except OSError as exc:
                # Committed all the same; the next clean-up removes the folder.
                log.warning("disk pool %s: removing %s: %s", self._layout.root, self._dir, exc)
            finally:
                self._end()

    def _publish(self) -> list[IndexRecord]:
        if self._current is not None:
            self._current.seal()
            self._sealed.append(self._current)
            self._current = None
        if not self._sealed:
            return []
        # Packs another thread sealed are synced by that thread; a commit that raced
        # with it (a caller's bug) must not publish an unsynced pack, so sync here too.
        for pack in self._sealed:
            pack.sync()
        journal = Journal("commit", self.id, new_packs=[p.pack_id.hex() for p in self._sealed])
        write_journal(self._dir, journal)
        dirs: set[Path] = set()
        for pack in self._sealed:
            target_dir = self._layout.pack_dir(pack.pack_id)
            make_dir(target_dir)
            pack.path.rename(self._layout.pack_path(pack.pack_id))
            dirs.add(target_dir)
        for d in sorted(dirs):
            fsync_dir(d)
        records = [
            IndexRecord(e.chunk_id, p.pack_id, e.offset, e.length)
            for p in self._sealed
            for e in p.entries
        ]
        write_segment(self._layout.index, self.id, records)
        return records

    def abort(self) -> None:
        """Drop the session's packs. Harmless after commit, failure or an earlier abort."""
        with self._lock:
            if self._state != "open":
                return
            self._state = "aborted"
            self._discard()
            self._end()

    def _check_open(self, what: str) -> None:
        if self._state == "failed":
            raise TapirError(
                f"cannot {what}: write session {self.id} failed earlier ({self._failure}); "
                "nothing of it was committed"
            )
        if self._state != "open":
            raise TapirError(f"cannot {what}: write session {self.id} is already {self._state}")

    def _errors(self, what: str) -> AbstractContextManager[None]:
        return media_full_on_no_space(self._layout.root, what)

    def _discard(self) -> None:
        for pack in [*self._sealed, *([self._current] if self._current else [])]:
            pack.close()
        self._current, self._sealed = None, []
        # The journal (if any) says whether packs already reached packs/ must go too.
        resolve(self._layout, self._dir)

    def _fail(self, exc: BaseException) -> None:
        self._state = "failed"
        self._failure = str(exc) or type(exc).__name__
        try:
            self._discard()
        except OSError as cleanup:
            # The next clean-up (open or garbage collection) retries from the journal.
            log.warning(
                "disk pool %s: cleaning up session %s: %s", self._layout.root, self.id, cleanup
            )
        finally:
            self._end()
        if isinstance(exc, OSError):
            raise TapirError(f"disk pool {self._layout.root}: {self._failure}") from exc

    def _end(self) -> None:
        self._hold.release()
        self._on_end(self)
