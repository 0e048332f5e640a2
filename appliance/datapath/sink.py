"""The engine's BackupSink: how a source plugin's items become one recovery point.

The plugin's thread only cuts chunks (and reads disks); hashing, compression,
encryption and ``put_chunk`` run in a bounded thread pool. Chunks go to the pool in
batches: small ones (the files of a tree full of small files) are gathered and a
large one is handed over at once (with the small ones gathered before it), so the
hand-off between threads costs the plugin's thread once per batch, not per chunk.
A semaphore caps the batches in flight, so a fast source waits for the pool instead
of filling memory. Cyclic garbage collection is held back while the writer is open
(see :mod:`.gctune`), and the C allocator keeps large buffers for reuse (see
:mod:`.memtune`).

Items enter the item stream in the order the plugin added them, each once all of its
chunks are stored. :meth:`RecoveryPointWriter.finish` waits for the last chunk, commits
the medium's session and only then writes the manifest: a recovery point exists only
once whole, and :meth:`RecoveryPointWriter.abort` leaves nothing visible.

Progress counts the logical bytes of items as they are handled: file data and holes as
written, the size of unchanged files added from the parent, and every span of a disk
(read, hole or reused), so a plugin that announces the sum of its item sizes as the
total sees 100 % at the end.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime

from ..plugin_api.context import NullProgress, ProgressReporter
from ..plugin_api.errors import ChunkCorrupt, ChunkMissing, PluginError, TapirError
from ..plugin_api.items import ChunkRef, Extent, Item, ItemKind
from .chunker import (
    StreamChunker,
    chunks_touched,
    disk_chunk_count,
    disk_chunk_span,
    is_zero,
    normalize_extents,
)
from .gctune import RelaxedGc
from .itemcodec import ItemStreamWriter
from .manifest import Manifest
from .memtune import tune_allocator
from .repository import Repository, StoredChunk

DiskReadFn = Callable[[int, int], bytes]
_PROGRESS_STEP = 4 * 1024 * 1024

#: Chunks smaller than this are grouped into batches before they go to the pool.
SMALL_CHUNK = 64 * 1024
#: A batch of small chunks is handed over once it holds this many bytes or chunks.
BATCH_BYTES = 512 * 1024
BATCH_CHUNKS = 64


_StoreFn = Callable[[bytes | memoryview], ChunkRef]


class _Task:
    """One chunk to store. A worker fills in ``ref``; ``batch`` is the batch's future."""

    __slots__ = ("batch", "data", "fn", "ref")

    def __init__(self, fn: _StoreFn, data: bytes | memoryview) -> None:
        self.fn: _StoreFn | None = fn
        self.data: bytes | memoryview | None = data
        self.ref: ChunkRef | None = None
        self.batch: Future | None = None

    def done(self) -> bool:
        """True once the worker finished the batch holding this chunk (or it failed)."""
        return self.batch is not None and self.batch.done()

    def result(self) -> ChunkRef:
        """The stored chunk's reference; waits for the batch and raises its failure."""
        if self.batch is None:
            raise TapirError("internal error: a chunk was never handed to the pool")
        self.batch.result()
        assert self.ref is not None
        return self.ref


def _run_batch(tasks: list[_Task]) -> None:
    for task in tasks:
        assert task.fn is not None and task.data is not None
        task.ref = task.fn(task.data)
        # Drop the data now: the task lives on in its item's slots until the item is
        # written, and must not keep the chunk's memory until then.
        task.fn = task.data = None


# One slot of an item's chunk list: a pending store, or a finished reference.
_Slot = _Task | ChunkRef


def _display(path: bytes) -> str:
    return path.decode("utf-8", "backslashreplace")


class ParentItems:
    """The parent recovery point as a :class:`ParentIndex`: items looked up by path.

    The parent's items are loaded into a dict by :meth:`load` (the writer calls it
    before its write session starts) or on the first lookup.
    """

    def __init__(self, repo: Repository, manifest: Manifest) -> None:
        self.repo = repo
        self.manifest = manifest
        self.recovery_point_id = manifest.id
        self._by_path: dict[bytes, Item] | None = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Read the parent's item list now (idempotent)."""
        with self._lock:
            if self._by_path is None:
                self._by_path = {item.path: item for item in self.repo.iter_items(self.manifest)}

    def lookup(self, path: bytes) -> Item | None:
        """The item stored at ``path`` in the parent, or None."""
        self.load()
        with self._lock:
            assert self._by_path is not None
            item = self._by_path.get(path)
        # A copy, so a plugin that edits it cannot change what later lookups return.
        return None if item is None else _copy_item(item)


_ITEM_FIELDS = tuple(f.name for f in fields(Item))


def _copy_item(item: Item) -> Item:
    # Field by field rather than dataclasses.replace, which rebuilds the keyword
    # arguments and runs __init__: this runs for every item of a backup.
    copy = Item.__new__(Item)
    for name in _ITEM_FIELDS:
        setattr(copy, name, getattr(item, name))
    copy.chunks = list(item.chunks)
    copy.flags = list(item.flags)
    copy.xattrs = dict(item.xattrs)
    copy.extra = dict(item.extra)
    return copy


@dataclass
class _Pending:
    """An item waiting for its chunks before it enters the item stream."""

    item: Item
    slots: list[_Slot] = field(default_factory=list)
    closed: bool = False


class _FileWriter:
    """The :class:`FileWriter` returned by :meth:`RecoveryPointWriter.open_file`."""

    def __init__(self, sink: RecoveryPointWriter, pending: _Pending) -> None:
        self._sink = sink
        self._pending = pending
        self._chunker = StreamChunker(sink.repo.file_chunker)
        self._length = 0
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise PluginError(f"file {_display(self._pending.item.path)} is already closed")
        self._sink._check_usable()

    def write(self, data: bytes) -> None:
        """Append data (any size; chunks are cut content-defined)."""
        self._check_open()
        if not data:
            return
        # Only immutable bytes may be referenced without a copy: a plugin may reuse
        # a bytearray or memoryview for its next read.
        if not isinstance(data, bytes):
            data = bytes(data)
        self._sink._check_canceled()
        for chunk in self._chunker.feed(data):
            self._pending.slots.append(self._sink._submit(self._sink._store_data, chunk))
        self._length += len(data)
        self._sink._consumed(len(data), read=True)

    def hole(self, length: int) -> None:
        """Append ``length`` zero bytes stored as a hole."""
        self._check_open()
        if length < 0:
            raise PluginError(f"negative hole length {length}")
        if not length:
            return
        self._flush()
        slots = self._pending.slots
        last = slots[-1] if slots else None
        if isinstance(last, ChunkRef) and last.id is None:
            slots[-1] = ChunkRef(None, last.length + length)
        else:
            slots.append(ChunkRef(None, length))
        self._length += length
        self._sink._consumed(length)

    def flag(self, flag: str) -> None:
        """Mark the item (e.g. ``changed-while-read``)."""
        self._check_open()
        if flag not in self._pending.item.flags:
            self._pending.item.flags.append(flag)

    def close(self) -> None:
        """Finish the file; it enters the item stream once its chunks are stored."""
        if self._closed:
            return
        self._sink._check_usable()
        self._flush()
        self._closed = True
        item = self._pending.item
        declared = item.size
        if declared and declared != self._length:
            self._sink.warn(
                item.path, f"size changed while read (expected {declared}, read {self._length})"
            )
            if "changed-while-read" not in item.flags:
                item.flags.append("changed-while-read")
        item.size = self._length
        self._sink._close(self._pending)

    def _flush(self) -> None:
        for chunk in self._chunker.finish():
            self._pending.slots.append(self._sink._submit(self._sink._store_data, chunk))

    # Context manager convenience for plugins.
    def __enter__(self) -> _FileWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()


class RecoveryPointWriter:
    """The engine's :class:`BackupSink`: writes one recovery point into a repository."""

    def __init__(
        self,
        repo: Repository,
        *,
        asset: dict[str, object],
        kind: str,
        level: str,
        job: str | None = None,
        parent: Manifest | None = None,
        progress: ProgressReporter | None = None,
        check_canceled: Callable[[], None] | None = None,
        workers: int | None = None,
        max_inflight_chunks: int | None = None,
        recovery_point_id: str | None = None,
    ) -> None:
        self.repo = repo
        self.recovery_point_id = recovery_point_id or uuid.uuid4().hex
        self.asset = dict(asset)
        self.kind = kind
        self.level = level
        self.job = job
        self.created_at = datetime.now(UTC).isoformat()
        self.parent: ParentItems | None = ParentItems(repo, parent) if parent else None
        if self.parent is not None:
            # Read the parent's items before the write session starts: on a medium
            # that reads and writes through the same device (one tape drive), the
            # parent cannot be read once the session holds it.
            self.parent.load()
        self._progress = progress or NullProgress()
        self._check_canceled_fn = check_canceled or (lambda: None)
        workers = workers or min(4, os.cpu_count() or 2)
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="tapir-chunk")
        # Counts batches (each holds one large chunk at most, or small ones only).
        self._slots = threading.Semaphore(max_inflight_chunks or 2 * workers + 2)
        self._batch: list[_Task] = []
        self._batch_bytes = 0
        self._batch_lock = threading.Lock()
        self._gc = RelaxedGc()
        tune_allocator()
        # Keeps garbage collection out until the manifest references every chunk
        # this backup committed or deduplicated against (see MediaStore.guard).
        try:
            self._guard = repo.store.guard(exclusive=False)
            self._guard.__enter__()
        except BaseException:
            self._gc.release()
            raise
        try:
            self._writer = repo.writer()
        except BaseException:
            self._gc.release()
            self._guard.__exit__(None, None, None)
            raise
        self._lock = threading.RLock()
        self._queue: deque[_Pending] = deque()
        self._open_files: dict[int, _Pending] = {}
        self._stream = ItemStreamWriter(self._store_stream_chunk, repo.item_chunker)
        self._stream_slots: list[_Task] = []
        self._warnings: list[str] = []
        self._failure: BaseException | None = None
        self._state = "open"
        self._progress_bytes = 0
        self._bytes_read = 0  # data actually read from the source (not reused, not holes)
        self._progress_lock = threading.Lock()
        self.manifest: Manifest | None = None

    # BackupSink.

    def add(self, item: Item) -> None:
        """Record an item without new data (directory, link, unchanged file...)."""
        self._check_usable()
        self._check_item(item)
        item = _copy_item(item)
        if item.kind in (ItemKind.FILE, ItemKind.DISK):
            if item.stored_size != item.size:
                raise PluginError(
                    f"{_display(item.path)}: size {item.size} but its chunks hold "
                    f"{item.stored_size} bytes (use open_file to store new data)"
                )
            self._check_chunks_present(item)
        elif item.chunks:
            raise PluginError(f"{_display(item.path)}: a {item.kind} item has no data chunks")
        self._check_canceled()
        pending = _Pending(item, list(item.chunks), closed=True)
        self._consumed(item.size)
        self._close(pending, enqueue=True)

    def open_file(self, item: Item) -> _FileWriter:
        """Start a regular file; write its data to the returned writer, then close it."""
        self._check_usable()
        self._check_item(item)
        if item.kind != ItemKind.FILE:
            raise PluginError(
                f"{_display(item.path)}: open_file needs a file item, not {item.kind}"
            )
        pending = _Pending(_copy_item(item))
        pending.item.chunks = []
        with self._lock:
            self._queue.append(pending)
            self._open_files[id(pending)] = pending
        return _FileWriter(self, pending)

    def add_disk(
        self,
        item: Item,
        read: DiskReadFn,
        extents: Iterable[Extent] | None = None,
        parent: Item | None = None,
    ) -> None:
        """Store a disk image of ``item.size`` bytes in fixed chunks aligned to disk offsets.

        Full (no ``parent``): ``extents`` are the allocated areas (None: all); chunks
        outside them and all-zero chunks become holes. Incremental: ``extents`` are the
        areas changed since ``parent``; other chunks are the parent's (a synthetic full).
        """
        self._check_usable()
        self._check_item(item)
        if item.kind != ItemKind.DISK:
            raise PluginError(f"{_display(item.path)}: add_disk needs a disk item, not {item.kind}")
        if item.size < 0:
            raise PluginError(f"{_display(item.path)}: negative disk size")
        size = item.size
        chunk_size = self.repo.disk_chunk_size
        try:
            ranges = normalize_extents(extents, size) if extents is not None else None
        except ValueError as exc:
            raise PluginError(f"{_display(item.path)}: {exc}") from None
        item = _copy_item(item)
        item.chunks = []
        item.extra["chunk_size"] = chunk_size
        pending = _Pending(item)
        reuse = self._reusable_chunks(parent, size, chunk_size) if parent is not None else None
        reading = ranges if ranges is not None else [Extent(0, size)]
        touched = chunks_touched(reading, chunk_size)
        next_touched = next(touched, None)
        for index in range(disk_chunk_count(size, chunk_size)):
            self._check_canceled()
            start, length = disk_chunk_span(index, size, chunk_size)
            parts: list[Extent] = []
            if next_touched is not None and next_touched[0] == index:
                parts = next_touched[1]
                next_touched = next(touched, None)
            if reuse is not None:
                ref = reuse[index] if index < len(reuse) else None
                if ref is not None and not parts:
                    pending.slots.append(ref)
                elif ref is not None and self._can_merge(ref, parts, length):
                    # Changed in part: the parent's copy completes what the source sends.
                    data = self._merge(read, item.path, start, ref, parts)
                    pending.slots.append(self._submit(self._store_disk, data))
                else:
                    # Changed, or no usable parent chunk: read the whole chunk.
                    data = self._read(read, item.path, start, length)
                    pending.slots.append(self._submit(self._store_disk, data))
            elif not parts:
                pending.slots.append(ChunkRef(None, length))
            else:
                data = self._read_parts(read, item.path, start, length, parts)
                pending.slots.append(self._submit(self._store_disk, data))
            self._consumed(length)
        pending.closed = True
        self._close(pending, enqueue=True)

    def warn(self, path: bytes | str, message: str) -> None:
        """Record a non-fatal problem with one item."""
        shown = _display(path) if isinstance(path, bytes) else path
        with self._lock:
            self._warnings.append(f"{shown}: {message}")

    # Engine side.

    @property
    def warnings(self) -> list[str]:
        """The warnings recorded so far."""
        with self._lock:
            return list(self._warnings)

    def finish(
        self, metadata: dict[str, object] | None = None, warnings: Iterable[str] | None = None
    ) -> Manifest:
        """Wait for all chunks, commit the session, then write the manifest; return it.

        On any failure the session is aborted (nothing becomes visible) and the error
        raised.
        """
        if self._state != "open":
            raise TapirError(f"recovery point {self.recovery_point_id} is {self._state}")
        try:
            self._raise_if_failed()
            with self._lock:
                if self._open_files:
                    left = next(iter(self._open_files.values())).item.path
                    raise PluginError(f"file {_display(left)} was opened but never closed")
                self._drain(wait=True)
                self._stream.finish()
            self._flush_batch()
            stream_ids = [slot.result().id for slot in self._stream_slots]
            self._executor.shutdown(wait=True)
            self._raise_if_failed()
            self._writer.commit()
            self._flush_progress()
            manifest = Manifest(
                id=self.recovery_point_id,
                asset=self.asset,
                kind=self.kind,
                level=self.level,
                created_at=self.created_at,
                parent=self.parent.recovery_point_id if self.parent else None,
                job=self.job,
                item_stream=stream_ids,
                items=self._stream.items,
                bytes_logical=self._stream.bytes_logical,
                bytes_new=self._writer.bytes_new,
                warnings=[*(warnings or []), *self.warnings],
                metadata=dict(metadata or {}),
            )
            self.repo.write_manifest(manifest)
        except BaseException:
            self.abort()
            raise
        self._state = "finished"
        self.manifest = manifest
        self._gc.release()
        self._guard.__exit__(None, None, None)
        return manifest

    def abort(self) -> None:
        """Drop everything written; nothing of this recovery point becomes visible."""
        if self._state != "open":
            return
        self._state = "aborted"
        try:
            with self._batch_lock:
                self._batch, self._batch_bytes = [], 0
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._writer.abort()
        finally:
            self._gc.release()
            self._guard.__exit__(None, None, None)

    @property
    def bytes_read(self) -> int:
        """Bytes this backup read from its source; unchanged files and holes are not read."""
        with self._progress_lock:
            return self._bytes_read

    @property
    def chunks_new(self) -> int:
        """Chunks this backup added to the pool."""
        return self._writer.chunks_new

    @property
    def chunks_dedup(self) -> int:
        """Chunks found on the pool already."""
        return self._writer.chunks_dedup

    @property
    def bytes_new(self) -> int:
        """Sealed bytes this backup added to the pool."""
        return self._writer.bytes_new

    # Internals.

    def _check_usable(self) -> None:
        if self._state != "open":
            raise TapirError(f"recovery point {self.recovery_point_id} is {self._state}")
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        failure = self._failure
        if failure is not None:
            raise failure

    def _check_canceled(self) -> None:
        self._check_canceled_fn()

    @staticmethod
    def _check_item(item: Item) -> None:
        if not isinstance(item.path, bytes):
            raise PluginError(f"item path must be bytes, got {type(item.path).__name__}")
        try:
            ItemKind(item.kind)
        except ValueError:
            raise PluginError(f"{_display(item.path)}: unknown item kind {item.kind!r}") from None

    def _check_chunks_present(self, item: Item) -> None:
        for ref in item.chunks:
            if ref.length < 0:
                raise PluginError(f"{_display(item.path)}: negative chunk length")
            if ref.id is not None and not self._writer.is_known(ref.id):
                raise ChunkMissing(ref.id, f"needed by {_display(item.path)} (not in the pool)")

    def _reusable_chunks(
        self, parent: Item, size: int, chunk_size: int
    ) -> list[ChunkRef | None] | None:
        """The parent's chunk ``i`` where it covers exactly this disk's chunk ``i``."""
        if parent.kind != ItemKind.DISK or parent.extra.get("chunk_size") != chunk_size:
            self.warn(parent.path, "parent disk has another chunk layout: reading the whole disk")
            return []
        reuse: list[ChunkRef | None] = []
        for index, (offset, ref) in enumerate(parent.chunk_offsets()):
            if index >= disk_chunk_count(size, chunk_size):
                break
            expected = disk_chunk_span(index, size, chunk_size)
            if (offset, ref.length) != expected:
                reuse.append(None)
            elif ref.id is not None and not self._writer.is_known(ref.id):
                raise ChunkMissing(ref.id, f"needed by the parent of {_display(parent.path)}")
            else:
                reuse.append(ref)
        return reuse

    def _read(self, read: DiskReadFn, path: bytes, offset: int, length: int) -> bytes:
        data = read(offset, length)
        with self._progress_lock:
            self._bytes_read += len(data)
        if len(data) != length:
            raise PluginError(
                f"{_display(path)}: disk read at {offset} returned {len(data)} bytes, "
                f"expected {length}"
            )
        return bytes(data)

    def _can_merge(self, ref: ChunkRef, parts: list[Extent], length: int) -> bool:
        if sum(p.length for p in parts) >= length:
            return False  # every byte changed: nothing to take from the parent
        return ref.id is None or self.repo.store.random_reads

    def _merge(
        self, read: DiskReadFn, path: bytes, start: int, ref: ChunkRef, parts: list[Extent]
    ) -> bytes:
        """The parent's chunk (verified) with the changed ``parts`` read from the source."""
        if ref.id is None:
            buf = bytearray(ref.length)
        else:
            buf = bytearray(self.repo.load_chunk(ref.id))
            if len(buf) != ref.length:
                raise ChunkCorrupt(ref.id, f"holds {len(buf)} bytes, the parent lists {ref.length}")
        for part in parts:
            rel = part.offset - start
            buf[rel : rel + part.length] = self._read(read, path, part.offset, part.length)
        return bytes(buf)

    def _read_parts(
        self, read: DiskReadFn, path: bytes, start: int, length: int, parts: list[Extent]
    ) -> bytes:
        if len(parts) == 1 and parts[0].offset == start and parts[0].length == length:
            return self._read(read, path, start, length)
        # Areas outside the allocated extents are holes: zeros, whatever the source holds.
        buf = bytearray(length)
        for part in parts:
            rel = part.offset - start
            buf[rel : rel + part.length] = self._read(read, path, part.offset, part.length)
        return bytes(buf)

    def _store_data(self, data: bytes | memoryview) -> ChunkRef:
        stored: StoredChunk = self._writer.store(data)
        return ChunkRef(stored.id, stored.length)

    def _store_disk(self, data: bytes | memoryview) -> ChunkRef:
        if is_zero(data):
            return ChunkRef(None, len(data))
        return self._store_data(data)

    def _store_stream_chunk(self, data: bytes | memoryview) -> None:
        self._stream_slots.append(self._submit(self._store_data, data))

    def _submit(self, fn: _StoreFn, data: bytes | memoryview) -> _Task:
        task = _Task(fn, data)
        with self._batch_lock:
            self._batch.append(task)
            self._batch_bytes += len(data)
            if not (
                len(data) >= SMALL_CHUNK
                or self._batch_bytes >= BATCH_BYTES
                or len(self._batch) >= BATCH_CHUNKS
            ):
                return task
            batch, self._batch, self._batch_bytes = self._batch, [], 0
            self._hand_over(batch)
        return task

    def _flush_batch(self) -> None:
        """Hand the small chunks gathered so far to the pool (before waiting for them)."""
        with self._batch_lock:
            batch, self._batch, self._batch_bytes = self._batch, [], 0
            if batch:
                self._hand_over(batch)

    def _hand_over(self, batch: list[_Task]) -> None:
        # Back-pressure: wait for a free slot, but notice failures and cancellation.
        try:
            while not self._slots.acquire(timeout=0.2):
                self._raise_if_failed()
                self._check_canceled()
        except BaseException:
            self._fail_tasks(batch)
            raise
        try:
            future = self._executor.submit(_run_batch, batch)
        except BaseException:
            self._slots.release()
            self._fail_tasks(batch)
            raise
        for task in batch:
            task.batch = future
        future.add_done_callback(self._task_done)

    def _fail_tasks(self, batch: list[_Task]) -> None:
        # Tasks that never reach the pool still need a finished future: a later
        # wait on them must raise, never hang.
        failed: Future = Future()
        failed.set_exception(TapirError("the backup failed before this chunk was stored"))
        for task in batch:
            task.batch = failed
            task.fn = task.data = None

    def _task_done(self, future: Future) -> None:
        self._slots.release()
        if not future.cancelled() and future.exception() is not None and self._failure is None:
            self._failure = future.exception()

    def _close(self, pending: _Pending, *, enqueue: bool = False) -> None:
        with self._lock:
            pending.closed = True
            if enqueue:
                self._queue.append(pending)
            else:
                self._open_files.pop(id(pending), None)
            self._drain(wait=False)
        self._advance(items_done=1, current=_display(pending.item.path))

    def _drain(self, *, wait: bool) -> None:
        """Move finished items from the head of the queue into the item stream."""
        if wait:
            self._flush_batch()
        while self._queue:
            head = self._queue[0]
            if not head.closed:
                return
            if not wait and not all(slot.done() for slot in head.slots if isinstance(slot, _Task)):
                return
            head.item.chunks = [
                slot.result() if isinstance(slot, _Task) else slot for slot in head.slots
            ]
            self._queue.popleft()
            self._stream.add(head.item)

    def _consumed(self, length: int, read: bool = False) -> None:
        with self._progress_lock:
            self._progress_bytes += length
            if read:
                self._bytes_read += length
            if self._progress_bytes < _PROGRESS_STEP:
                return
        self._flush_progress()

    def _flush_progress(self) -> None:
        with self._progress_lock:
            done, self._progress_bytes = self._progress_bytes, 0
        if done:
            self._progress.advance(bytes_done=done)

    def _advance(self, *, items_done: int, current: str) -> None:
        self._flush_progress()
        self._progress.advance(items_done=items_done, current=current)
