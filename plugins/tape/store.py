"""The tape ``MediaStore``: backups written to a pool's media sets and read back.

Writing (:class:`TapeWriteSession`): the session takes the pool's media-set
lock, decides by the allocation policy whether it continues the current media
set or starts a new one (has_chunk then answers for that set only: every set is
self-contained), and at its first chunk reserves a free drive, loads the
volume through the changer, checks its label, labels a scratch volume, and
streams the chunks that several threads put into one chunk archive from a
single writer thread. At the early warning it closes the archive part, writes
the volume's catalog, marks it full and continues on the next volume of the
set. ``commit`` closes the archive (filemark) and only then records the chunk
locations in the index; ``put_manifest`` writes a manifest archive (the
manifest and the pool's config files) and records it; when the backup's guard
is released the session writes the volume's catalog file, unloads the
cartridge and frees the drive.

Reading (``get_chunk``) goes through :class:`~.reader.TapeReader`: straight to
the tape file and block, then forward.

Configs and manifests are served from the index; tape is append-only, so
``delete_manifest`` only marks a manifest deleted and ``delete_chunks``
reclaims nothing: space comes back when a whole media set expires.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path

from tapir.appliance.plugin_api import (
    Capacity,
    ChunkMissing,
    DeviceInfo,
    MediaFull,
    MediaPlugin,
    MediaStore,
    OptionSpec,
    PluginContext,
    PoolInfo,
    TapirError,
    VolumeInfo,
    WriteSession,
)
from tapir.hardware.drive import TapeDrive
from tapir.hardware.errors import EarlyWarning, EndOfData

from .allocation import new_volume_candidates, parse_time, starts_new_set
from .blockio import FileSummary, TapeFileWriter, locate, scan_volume, write_catalog
from .drive_crypto import DriveCrypto, ensure_drive_key
from .format import (
    CatalogHeader,
    CatalogRecord,
    ChunkArchiveHeader,
    FileKind,
    ManifestArchiveHeader,
    MediaLabel,
    TapeFormatError,
    TruncatedFile,
    new_uuid,
    utc_now,
)
from .index import TapeIndex, config_entry_name
from .keyprint import REPOSITORY_CONFIG, key_fingerprint
from .labels import (
    RECYCLABLE_STATES,
    ForeignTape,
    WriteRefused,
    check_writable,
    read_media_label,
    read_media_set_label,
    write_media_label,
    write_media_set_label,
)
from .library import Library, VolumeUnavailable
from .options import POOL_OPTIONS, PoolSettings
from .reader import TapeReader
from .reservation import DriveLease, FileLock, LockBusy, hold, reserve_drive

#: Sealed blobs waiting for the writer thread; bounds memory, keeps the drive fed.
QUEUE_DEPTH = 64
INDEX_FILE = "index.sqlite"


#: Native (uncompressed) capacity of LTO generations, by the volume's media type.
NATIVE_CAPACITY = {
    "LTO-5": 1_500 * 10**9,
    "LTO-6": 2_500 * 10**9,
    "LTO-7": 6_000 * 10**9,
    "LTO-8": 12_000 * 10**9,
    "LTO-9": 18_000 * 10**9,
}


def native_capacity(volume: VolumeInfo) -> int | None:
    """The volume's size: as recorded, else its media type's native capacity, else None."""
    if volume.bytes_total is not None:
        return volume.bytes_total
    return NATIVE_CAPACITY.get(volume.media_type.strip().upper())


def index_folder(ctx: PluginContext, pool: str) -> Path:
    """Where a tape pool's index lives: ``state_dir/pools/<pool>``."""
    if ctx.state_dir is None:
        raise TapirError("the tape plugin needs a state folder (PluginContext.state_dir)")
    return Path(ctx.state_dir) / "pools" / pool


def pool_drives(ctx: PluginContext, settings: PoolSettings) -> list[DeviceInfo]:
    """The pool's drives as registered; TapirError for a drive of another changer."""
    if ctx.devices is None:
        raise TapirError("the tape plugin needs the device look-up in its context")
    changer = ctx.devices.get(settings.changer)
    if changer.kind != "changer":
        raise TapirError(f"device {settings.changer!r} is a {changer.kind}, not a changer")
    drives = []
    for name in settings.drives:
        drive = ctx.devices.get(name)
        if drive.kind != "drive" or drive.changer != settings.changer:
            raise TapirError(f"device {name!r} is not a drive of changer {settings.changer!r}")
        drives.append(drive)
    return drives


class TapeMediaPlugin(MediaPlugin):
    """Tape pools on a SCSI tape library."""

    name = "tape"
    title = "Tape library"

    def pool_options(self) -> list[OptionSpec]:
        """changer, drives, allocation, retention_days / retention_sets, block_size."""
        return list(POOL_OPTIONS)

    def create(self, pool: PoolInfo, ctx: PluginContext) -> MediaStore:
        """Check the options, the changer and the drives, and start the pool's index;
        refuse an existing index folder."""
        settings = PoolSettings.from_options(pool.options)
        try:
            pool_drives(ctx, settings)
        except KeyError as exc:
            raise TapirError(f"tape pool {pool.name!r}: {exc.args[0]}") from None
        folder = index_folder(ctx, pool.name)
        if folder.exists() and any(folder.iterdir()):
            raise TapirError(
                f"the tape index folder {folder} already exists: another pool named "
                f"{pool.name!r} used it. Remove it, or rebuild that pool from its tapes"
            )
        # The key first: a pool that cannot keep its key is not created.
        ensure_drive_key(ctx, pool.name, settings.drive_encryption)
        folder.mkdir(parents=True, exist_ok=True)
        return TapeStore(pool, ctx, settings, TapeIndex(folder / INDEX_FILE))

    def open(self, pool: PoolInfo, ctx: PluginContext) -> MediaStore:
        """Open the pool's index (no tape is loaded until data is read or written)."""
        settings = PoolSettings.from_options(pool.options)
        path = index_folder(ctx, pool.name) / INDEX_FILE
        if not path.exists():
            raise FileNotFoundError(
                f"tape pool {pool.name!r} has no index at {path}; rebuild it from its tapes "
                "(tapir tape catalog rebuild)"
            )
        return TapeStore(pool, ctx, settings, TapeIndex(path))


class TapeStore(MediaStore):
    """An opened tape pool: the index, the library and at most one write session."""

    # Reading a chunk means mounting and positioning a cartridge: never mid-backup.
    random_reads = False

    def __init__(
        self, pool: PoolInfo, ctx: PluginContext, settings: PoolSettings, index: TapeIndex
    ) -> None:
        self.pool = pool
        self.ctx = ctx
        self.settings = settings
        self.index = index
        self._lock = threading.RLock()
        self._guards = 0
        self._session: TapeWriteSession | None = None
        self._reader: TapeReader | None = None
        self._library: Library | None = None

    @property
    def library(self) -> Library:
        """The pool's changer (opened on first use)."""
        if self._library is None:
            self._library = Library(self.ctx, self.settings.changer)
        return self._library

    def drives(self) -> list[DeviceInfo]:
        """The pool's drives."""
        return pool_drives(self.ctx, self.settings)

    # --- configs and manifests (index) --------------------------------------

    def get_config(self, name: str) -> bytes | None:
        """A config file from the index."""
        return self.index.get_config(name)

    def put_config(self, name: str, data: bytes) -> None:
        """Store a config file in the index; it goes to tape with every manifest archive."""
        self.index.put_config(name, data)

    def put_manifest(self, name: str, blob: bytes) -> None:
        """Write the manifest to tape (with the configs) and record it; call after commit."""
        with self._lock:
            session = self._session
            if session is None:
                session = self.begin()
                try:
                    session.commit()
                    session.write_manifest(name, blob)
                finally:
                    session.end()
                return
        session.write_manifest(name, blob)
        with self._lock:
            if self._guards == 0:
                session.end()

    def get_manifest(self, name: str) -> bytes:
        """A manifest from the index; FileNotFoundError."""
        return self.index.get_manifest(name)

    def manifests(self) -> list[str]:
        """Every manifest not deleted."""
        return self.index.manifest_names()

    def delete_manifest(self, name: str) -> None:
        """Mark the manifest deleted; the tape keeps it until its media set expires."""
        self.index.delete_manifest(name)

    def delete_chunks(self, chunk_ids: Iterable[bytes]) -> int:
        """Nothing is reclaimed on tape (0): retention expires whole media sets."""
        return 0

    # --- chunks ------------------------------------------------------------------

    def begin(self) -> TapeWriteSession:
        """Start a write session (waits for the pool's media set if another backup writes it)."""
        with self._lock:
            if self._session is not None:
                raise TapirError("a write session is already open on this tape pool handle")
            self._session = TapeWriteSession(self)
            return self._session

    def has_chunk(self, chunk_id: bytes) -> bool:
        """The chunk is on the media set the current (or next) session writes."""
        session = self._session
        if session is not None:
            return self.index.has_chunk(chunk_id, session.media_set)
        current = self.index.current_media_set()
        return current is not None and self.index.has_chunk(chunk_id, current.uuid)

    def get_chunk(self, chunk_id: bytes) -> bytes:
        """Read a chunk from tape (loading its cartridge); ChunkMissing when unknown."""
        loc = self.index.chunk_location(chunk_id)
        if loc is None:
            raise ChunkMissing(chunk_id, f"not in the index of tape pool {self.pool.name}")
        with self._lock:
            session = self._session
            # From its first chunk on, the session holds (or is taking) a drive.
            writing = session is not None and session.holds_hardware
            if session is not None and session.volume_label == loc.volume:
                raise TapirError(
                    f"chunk {chunk_id.hex()} is on {loc.volume}, which this backup is writing; "
                    "it can be read once the backup ends"
                )
            if self._reader is None:
                # While this store writes it holds a drive: never wait for another
                # one, which could be the wait of a one-drive pool for itself.
                self._reader = TapeReader(
                    self.ctx,
                    self.library,
                    self.drives(),
                    wait=not writing,
                    purpose=f"read from pool {self.pool.name}",
                    crypto=self._crypto(writing=False),
                )
            return self._reader.read_blob(chunk_id, loc.volume, loc.file, loc.offset)

    def chunk_ids(self) -> Iterator[bytes]:
        """Every chunk id of the pool's media sets."""
        return self.index.chunk_ids()

    def capacity(self) -> Capacity:
        """Bytes used on the pool's volumes; total and free where every size is known."""
        assert self.ctx.volumes is not None
        mine = self.ctx.volumes.list(pool=self.pool.name)
        scratch = [v for v in self.ctx.volumes.list(state="scratch") if v.pool is None]
        used = sum(v.bytes_used for v in mine)
        usable = [v for v in mine if v.state in ("scratch", "writable")] + scratch
        sizes = {v.label: native_capacity(v) for v in mine + scratch}
        if any(size is None for size in sizes.values()):
            return Capacity(total=None, used=used, free=None)
        total = sum(size or 0 for size in sizes.values())
        free = sum(max(0, (sizes[v.label] or 0) - v.bytes_used) for v in usable)
        return Capacity(total=total, used=used, free=free)

    def can_reference(self, manifest_name: str) -> bool:
        """Only points on the media set the next session writes: every set restores alone."""
        loc = self.index.manifest_location(manifest_name)
        if loc is None:
            return False
        session = self._session
        if session is not None:
            return loc.media_set == session.media_set
        current = self.index.current_media_set()
        if current is None or starts_new_set(
            self.settings.allocation, parse_time(current.created_at), datetime.now(UTC)
        ):
            return False
        return loc.media_set == current.uuid

    def guard(self, exclusive: bool = False) -> AbstractContextManager[object]:
        """Hold the session: the drive and volume stay held until the guard is released.

        A backup holds it from its first chunk until its manifest is on tape; on
        release the session writes the volume's catalog and frees the drive.
        Garbage collection (exclusive) reclaims nothing on tape, so it needs no
        more than the count.
        """
        return self._guarded()

    @contextmanager
    def _guarded(self) -> Iterator[object]:
        with self._lock:
            self._guards += 1
        try:
            yield self
        finally:
            with self._lock:
                self._guards -= 1
                session = self._session
                if self._guards == 0 and session is not None:
                    session.end()

    def _crypto(self, *, writing: bool) -> DriveCrypto:
        return DriveCrypto(
            self.ctx, self.pool.name, self.settings.drive_encryption, writing=writing
        )

    def _release_reader(self) -> None:
        with self._lock:
            reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()

    def _session_ended(self, session: TapeWriteSession) -> None:
        with self._lock:
            if self._session is session:
                self._session = None

    def close(self) -> None:
        """End a session still open (aborting it), unload what is mounted, close the index."""
        try:
            session = self._session
            if session is not None:
                session.end()
            self._release_reader()
        finally:
            if self._library is not None:
                self._library.close()
                self._library = None
            self.index.close()


class _Archive:
    """One archive (chunk or manifest) being written, continued across volumes."""

    def __init__(self, session: TapeWriteSession, kind: FileKind) -> None:
        self.session = session
        self.kind = kind
        if session.tape is not None and session.tape.early_warning:
            session.next_volume()  # a new archive never starts past the early warning
        cls = ChunkArchiveHeader if kind == FileKind.CHUNK_ARCHIVE else ManifestArchiveHeader
        vol = session.current_volume()
        self.header = cls(
            session.media_set,
            vol.media_set_seq,
            new_uuid(),
            0,
            session.id,
            session.next_archive_seq(),
            utc_now(),
        )
        self.parts: list[tuple[str, int, FileSummary]] = []
        self.writer = TapeFileWriter(session.drive(), self.header, session.block_size)

    def add(self, name: bytes | str, blob: bytes) -> None:
        """Append one entry; at the early warning close this part and go on on the next volume."""
        try:
            if self.kind == FileKind.CHUNK_ARCHIVE:
                assert isinstance(name, bytes)
                self.writer.add_chunk(name, blob)
            else:
                assert isinstance(name, str)
                self.writer.add_manifest(name, blob)
        except EarlyWarning:
            self._done(self.writer.close(continues=True))
            self.session.next_volume()
            self.header = self.header.next_part(self.session.current_volume().media_set_seq or 0)
            self.writer = TapeFileWriter(self.session.drive(), self.header, self.session.block_size)

    def close(self) -> None:
        """End the archive: last block, filemark; its parts are then on tape."""
        self._done(self.writer.close())

    def _done(self, summary: FileSummary) -> None:
        label = self.session.current_volume().label
        number = self.session.file_written(summary)
        self.parts.append((label, number, summary))


class TapeWriteSession(WriteSession):
    """One backup's writes to the pool's media set (see the module docstring)."""

    def __init__(self, store: TapeStore) -> None:
        self.store = store
        self.ctx = store.ctx
        self.id = new_uuid()
        self._pool_lock: FileLock = hold(
            self.ctx, "pool", store.pool.name, purpose=f"backup session {self.id}"
        )
        current = store.index.current_media_set()
        now = datetime.now(UTC)
        allocation = store.settings.allocation
        if current is not None and not starts_new_set(
            allocation, parse_time(current.created_at), now
        ):
            self.media_set, self.set_created_at = current.uuid, current.created_at
            self._old_set: str | None = None
            self._new_set = False
        else:
            self.media_set, self.set_created_at = new_uuid(), utc_now()
            self._old_set = current.uuid if current is not None else None
            self._new_set = True
        self.state = "open"
        self._queue: queue.Queue[tuple[bytes, bytes] | None] = queue.Queue(QUEUE_DEPTH)
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._aborting = False
        self._chunks: _Archive | None = None
        self._archive_seq = 0
        self._ended = False
        self.lease: DriveLease | None = None
        self.tape: TapeDrive | None = None
        self.volume: VolumeInfo | None = None
        self.label: MediaLabel | None = None
        self._volume_lock: FileLock | None = None
        self.block_size = store.settings.block_size
        self.next_file = 0
        self._bytes = 0
        self._wrote = False
        self.crypto = store._crypto(writing=True)

    @property
    def holds_hardware(self) -> bool:
        """The session has started writing: it holds, or is reserving, a drive."""
        return self.lease is not None or self._thread is not None

    @property
    def volume_label(self) -> str | None:
        """The barcode of the volume mounted for writing, if any."""
        return self.volume.label if self.volume is not None else None

    # --- WriteSession ------------------------------------------------------------

    def put_chunk(self, chunk_id: bytes, blob: bytes) -> None:
        """Queue one sealed blob for the writer thread; raises its failure, if any."""
        if self.state != "open":
            raise TapirError(f"this tape write session is {self.state}")
        self._raise_failure()
        with self.store._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="tapir-tape-writer", daemon=True
                )
                self._thread.start()
        self._put((bytes(chunk_id), bytes(blob)))

    def commit(self) -> None:
        """Close the chunk archive (on tape with its filemark), then record its chunks."""
        if self.state != "open":
            raise TapirError(f"this tape write session is {self.state}")
        self._stop_writer()
        self._raise_failure()
        chunks = self._chunks
        self._chunks = None
        if chunks is not None:
            for label, number, summary in chunks.parts:
                self.store.index.record_chunks(self.media_set, label, number, summary.chunks)
        self.state = "committed"

    def abort(self) -> None:
        """End the chunk archive cleanly (the tape stays readable) and record no chunk."""
        if self.state not in ("open", "committed"):
            return
        self._aborting = True
        self._stop_writer()
        self.state = "aborted"
        with self.store._lock:
            if self.store._guards == 0:
                self.end()

    # --- manifests --------------------------------------------------------------

    def write_manifest(self, name: str, blob: bytes) -> None:
        """Write a manifest archive (configs and this manifest) and record the manifest."""
        if self.state != "committed":
            raise TapirError("a manifest is stored only after the session's commit")
        self._ensure_started()
        archive = _Archive(self, FileKind.MANIFEST_ARCHIVE)
        for config, data in self.store.index.configs().items():
            archive.add(config_entry_name(config), data)
        archive.add(name, blob)
        archive.close()
        for label, number, summary in archive.parts:
            for entry, offset in summary.manifests:
                if entry == name:
                    self.store.index.put_manifest(name, self.media_set, label, number, offset, blob)

    # --- the end ------------------------------------------------------------------

    def end(self) -> None:
        """Finish: the volume's catalog, the volume's state, unload, free drive and locks."""
        if self._ended:
            return
        self._ended = True
        try:
            if self.state == "open":
                self._aborting = True
                self._stop_writer()
                self.state = "aborted"
            if self.tape is not None:
                label = self.volume_label
                try:
                    self._finish_volume(full=False)
                except Exception as exc:  # the backup's data and manifest are on tape already
                    self.ctx.logger.error("ending the session on %s failed: %s", label, exc)
                    self._set_aside_after_failure(label, exc)
        finally:
            if self._volume_lock is not None:
                self._volume_lock.release()
            if self.lease is not None:
                self.lease.release()
            self._pool_lock.release()
            self.store._session_ended(self)
            if self.state != "aborted":
                self.state = "ended"

    # --- the writer thread ----------------------------------------------------

    def _put(self, item: tuple[bytes, bytes] | None) -> None:
        while True:
            thread = self._thread
            if thread is None or not thread.is_alive():
                self._raise_failure()
                raise TapirError("the tape writer thread is not running")
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def _stop_writer(self) -> None:
        thread = self._thread
        if thread is None:
            return
        if thread.is_alive():
            self._put(None)
        thread.join()
        self._thread = None

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                break
            if self._failure is not None or self._aborting:
                continue  # drain: producers must not block on a dead writer
            try:
                if self._chunks is None:
                    self._ensure_started()
                    self._chunks = _Archive(self, FileKind.CHUNK_ARCHIVE)
                self._chunks.add(*item)
            except BaseException as exc:  # handed to the producers and to commit
                self._failure = exc
        if self._chunks is not None and self._failure is None:
            try:
                self._chunks.close()
            except BaseException as exc:
                self._failure = exc
        if self._aborting:
            self._chunks = None

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise TapirError(f"writing to tape failed: {self._failure}") from self._failure

    # --- volumes ------------------------------------------------------------------

    def drive(self) -> TapeDrive:
        """The drive written to (started)."""
        if self.tape is None:
            raise TapirError("no volume is mounted for writing")
        return self.tape

    def current_volume(self) -> VolumeInfo:
        """The volume written to."""
        if self.volume is None:
            raise TapirError("no volume is mounted for writing")
        return self.volume

    def next_archive_seq(self) -> int:
        """The number of the session's next archive."""
        self._archive_seq += 1
        return self._archive_seq - 1

    def file_written(self, summary: FileSummary) -> int:
        """Note a tape file closed on the current volume; returns its number."""
        number = self.next_file
        if summary.file_number is not None and summary.file_number != number:
            raise TapirError(
                f"tape file numbering lost on {self.volume_label}: the drive is at file "
                f"{summary.file_number}, expected {number}"
            )
        assert self.volume is not None
        self.store.index.record_file(self.volume.label, summary.catalog_record(number))
        self.next_file += 1
        self._bytes += summary.blocks * self.block_size
        self._wrote = True
        return number

    def _ensure_started(self) -> None:
        if self.tape is not None:
            return
        store = self.store
        store._release_reader()
        if self.lease is None:
            self.lease = reserve_drive(
                self.ctx, store.drives(), purpose=f"backup to pool {store.pool.name}"
            )
            self.ctx.logger.info("backup session %s uses drive %s", self.id, self.lease.drive.name)
        self.crypto.check(self.lease.drive)  # drive_encryption=required refuses here
        if self._new_set:
            self._start_media_set()
        self._open_volume()

    def _start_media_set(self) -> None:
        store, volumes = self.store, self.ctx.volumes
        assert volumes is not None
        if self._old_set is not None:
            store.index.seal_media_set(self._old_set)
            for vol in volumes.list(pool=store.pool.name, media_set=self._old_set):
                if vol.state == "writable":
                    volumes.save(dataclasses.replace(vol, state="full"))
            self.ctx.logger.info("media set %s sealed; starting %s", self._old_set, self.media_set)
        store.index.add_media_set(self.media_set, store.pool.name, self.set_created_at)
        self._new_set = False

    def _open_volume(self) -> None:
        volumes = self.ctx.volumes
        assert volumes is not None
        pool = self.store.pool.name
        in_set = volumes.list(pool=pool, media_set=self.media_set)
        refused: list[str] = []
        writable = [v for v in in_set if v.state == "writable"]
        if writable and self._try(writable[-1], refused, seq=None):
            return
        seqs = [v.media_set_seq for v in volumes.list(pool=pool, media_set=self.media_set)]
        self._open_new(max((s for s in seqs if s is not None), default=-1) + 1, refused)

    def _open_new(self, seq: int, refused: list[str]) -> None:
        assert self.ctx.volumes is not None
        inv = self.store.library.inventory()
        present = {el.barcode for el in inv.all() if el.full and el.barcode}
        pool = self.store.pool.name
        for vol in new_volume_candidates(self.ctx.volumes.list(), pool, present):
            if self._try(vol, refused, seq=seq):
                return
        why = "; ".join(refused) or "no scratch or recyclable cartridge in the library"
        raise MediaFull(f"pool {pool}: no volume to write media set {self.media_set} on ({why})")

    def next_volume(self) -> None:
        """The current volume is full: write its catalog and continue on the next one."""
        seq = (self.current_volume().media_set_seq or 0) + 1
        self._finish_volume(full=True)
        self._open_new(seq, [])

    def _try(self, vol: VolumeInfo, refused: list[str], *, seq: int | None) -> bool:
        """Mount and prepare ``vol``: append (``seq`` None) or take it into the set."""
        assert self.lease is not None and self.ctx.volumes is not None
        try:
            lock = hold(self.ctx, "volume", vol.label, purpose=f"backup {self.id}", wait=False)
        except LockBusy as exc:
            refused.append(f"{vol.label}: {exc}")
            return False
        tape: TapeDrive | None = None
        try:
            tape = self.store.library.mount(vol.label, self.lease.drive)
            self.crypto.engage(tape, self.lease.drive)
            label = read_media_label(tape, self.block_size)
            check_writable(label, vol, self.store.pool.name)
            if seq is None:
                assert label is not None
                self._prepare_append(tape, vol, label)
            else:
                vol, label = self._prepare_new(tape, vol, label, seq)
        except (VolumeUnavailable, ForeignTape, WriteRefused, TapeFormatError) as exc:
            refused.append(f"{vol.label}: {exc}")
            self.ctx.logger.warning("not writing %s: %s", vol.label, exc)
            self._set_aside(vol, exc)
            if tape is not None:
                self.crypto.release(tape, self.lease.drive)
                self.store.library.unmount(self.lease.drive, tape)
                tape.close()
            lock.release()
            return False
        except BaseException:
            if tape is not None:
                self.crypto.release(tape, self.lease.drive)
                tape.close()
            lock.release()
            raise
        self.tape, self.volume, self.label, self._volume_lock = tape, vol, label, lock
        self._wrote = False
        self.ctx.logger.info(
            "writing media set %s on %s (volume %d, file %d)",
            self.media_set,
            vol.label,
            vol.media_set_seq or 0,
            self.next_file,
        )
        return True

    def _set_aside(self, vol: VolumeInfo, exc: Exception) -> None:
        """Keep a refused volume out of allocation, saying why (full or error)."""
        assert self.ctx.volumes is not None
        if isinstance(exc, VolumeUnavailable):
            return
        now = datetime.now(UTC).isoformat(timespec="seconds")
        state = "full" if isinstance(exc, TruncatedFile) and vol.state == "writable" else "error"
        note = f"{now} refused for writing by pool {self.store.pool.name}: {exc}"
        current = self.ctx.volumes.get(vol.label) or vol
        self.ctx.volumes.save(dataclasses.replace(current, state=state, note=note[:9000]))

    def _set_aside_after_failure(self, label: str | None, exc: Exception) -> None:
        """A volume whose session could not end cleanly is not appended to again."""
        if label is None or self.ctx.volumes is None:
            return
        try:
            current = self.ctx.volumes.get(label)
            if current is not None:
                note = (
                    f"{datetime.now(UTC).isoformat(timespec='seconds')} session end failed: {exc}"
                )
                self.ctx.volumes.save(dataclasses.replace(current, state="error", note=note[:9000]))
        except Exception as again:  # already on an error path: report, do not mask
            self.ctx.logger.error("could not mark %s as error: %s", label, again)

    def _prepare_new(
        self, tape: TapeDrive, vol: VolumeInfo, label: MediaLabel | None, seq: int
    ) -> tuple[VolumeInfo, MediaLabel]:
        volumes = self.ctx.volumes
        assert volumes is not None
        pool = self.store.pool.name
        # Before anything is written: a damaged config must not leave a half-labelled tape.
        fingerprint = key_fingerprint(self.store.index.get_config(REPOSITORY_CONFIG))
        if vol.uuid is None:
            # The catalog knows the cartridge's uuid before the tape does, so that a
            # crash right after labelling leaves a label the catalog recognises.
            vol = volumes.save(dataclasses.replace(vol, uuid=new_uuid()))
        if label is None or vol.state in RECYCLABLE_STATES:
            vol = write_media_label(tape, vol, pool, self.block_size)
            label = read_media_label(tape, self.block_size)
            if label is None or label.volume != vol.uuid:
                raise TapirError(f"{vol.label}: the media label just written does not read back")
        elif vol.worm and read_media_set_label(tape, label.block_size) is not None:
            raise WriteRefused(f"{vol.label} is a WORM cartridge that already holds data")
        self.block_size = label.block_size
        self.store.index.forget_volume(vol.label)
        set_label = write_media_set_label(
            tape,
            label,
            pool=pool,
            media_set=self.media_set,
            seq=seq,
            set_created_at=self.set_created_at,
            block_size=self.block_size,
            key_fingerprint=fingerprint,
        )
        index = self.store.index
        index.record_file(vol.label, CatalogRecord.for_file(0, label))
        index.record_file(vol.label, CatalogRecord.for_file(1, set_label))
        self.next_file = 2
        self._bytes = 2 * self.block_size
        vol = volumes.get(vol.label) or vol
        saved = volumes.save(
            dataclasses.replace(
                vol,
                pool=pool,
                uuid=label.volume,
                state="writable",
                media_set=self.media_set,
                media_set_seq=seq,
                labeled=True,
                bytes_used=self._bytes,
                last_written_at=datetime.now(UTC),
                expires_at=None,
            )
        )
        self.ctx.logger.info("%s joins media set %s as volume %d", vol.label, self.media_set, seq)
        return saved, label

    def _prepare_append(self, tape: TapeDrive, vol: VolumeInfo, label: MediaLabel) -> None:
        block = label.block_size
        set_label = read_media_set_label(tape, block)
        if set_label is None or set_label.media_set != vol.media_set:
            raise WriteRefused(
                f"{vol.label}: the media-set label on tape does not name media set "
                f"{vol.media_set} as the catalog does"
            )
        files = scan_volume(tape, block)
        count = len(files)
        try:
            locate(tape, count, block)
        except EndOfData:
            raise TruncatedFile(
                f"tape file {count - 1} of {vol.label} has no closing filemark (a writer "
                "stopped there); the volume is closed for appending"
            ) from None
        index = self.store.index
        known = {r.file_number for r in index.volume_records(vol.label)}
        if known and max(known) >= count:
            raise WriteRefused(
                f"{vol.label}: the index knows tape file {max(known)}, the tape has {count} files"
            )
        for found in files:
            if found.file_number not in known and found.header is not None:
                # Left by a session that died: described by its header alone.
                index.record_file(
                    vol.label, CatalogRecord.for_file(found.file_number, found.header)
                )
        self.block_size = block
        self.next_file = count
        self._bytes = vol.bytes_used

    def _finish_volume(self, *, full: bool) -> None:
        """Write the session's catalog on the current volume, save it, unload it."""
        tape, vol, label = self.tape, self.volume, self.label
        assert tape is not None and vol is not None and label is not None
        assert self.lease is not None and self.ctx.volumes is not None
        try:
            if self._wrote:
                header = CatalogHeader(
                    self.media_set,
                    vol.media_set_seq,
                    label.volume,
                    self.id,
                    self.next_file,
                    utc_now(),
                )
                records = self.store.index.volume_records(vol.label)
                summary = write_catalog(tape, header, records, self.block_size)
                self.file_written(summary)
            full = full or tape.early_warning
            current = self.ctx.volumes.get(vol.label) or vol
            self.ctx.volumes.save(
                dataclasses.replace(
                    current,
                    state="full" if full else "writable",
                    bytes_used=self._bytes,
                    last_written_at=datetime.now(UTC) if self._wrote else current.last_written_at,
                )
            )
        finally:
            self.tape = None
            self.volume = None
            self.label = None
            try:
                self.crypto.release(tape, self.lease.drive)
                self.store.library.unmount(self.lease.drive, tape)
            finally:
                tape.close()
                if self._volume_lock is not None:
                    self._volume_lock.release()
                    self._volume_lock = None
