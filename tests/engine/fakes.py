"""Small plugins for engine tests: an in-memory medium and a scriptable file source.

They implement the real plugin roles, so the engine runs with the real repository,
recovery point writer and reader behind them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tapir.appliance.plugin_api import (
    ApplicationPlugin,
    AssetInfo,
    BackupRequest,
    BackupResult,
    Capacity,
    ChunkMissing,
    EndpointInfo,
    Item,
    ItemKind,
    MediaPlugin,
    MediaStore,
    OptionSpec,
    PluginContext,
    PluginError,
    PoolInfo,
    RestoreRequest,
    RestoreResult,
    RestoreSource,
    WriteSession,
    hookimpl,
)


class MemStore(MediaStore):
    """A medium held in dicts; shared by every opening of the same pool path."""

    def __init__(self) -> None:
        self.config: dict[str, bytes] = {}
        self.chunks: dict[bytes, bytes] = {}
        self.manifest_blobs: dict[str, bytes] = {}
        self.lock = threading.Lock()

    def get_config(self, name: str) -> bytes | None:
        return self.config.get(name)

    def put_config(self, name: str, data: bytes) -> None:
        self.config[name] = data

    def begin(self) -> WriteSession:
        return MemSession(self)

    def has_chunk(self, chunk_id: bytes) -> bool:
        return chunk_id in self.chunks

    def get_chunk(self, chunk_id: bytes) -> bytes:
        try:
            return self.chunks[chunk_id]
        except KeyError:
            raise ChunkMissing(chunk_id) from None

    def chunk_ids(self) -> Iterator[bytes]:
        return iter(list(self.chunks))

    def put_manifest(self, name: str, blob: bytes) -> None:
        self.manifest_blobs[name] = blob

    def get_manifest(self, name: str) -> bytes:
        try:
            return self.manifest_blobs[name]
        except KeyError:
            raise FileNotFoundError(name) from None

    def manifests(self) -> list[str]:
        return sorted(self.manifest_blobs)

    def delete_manifest(self, name: str) -> None:
        self.manifest_blobs.pop(name, None)

    def delete_chunks(self, chunk_ids: Iterable[bytes]) -> int:
        freed = 0
        for cid in chunk_ids:
            blob = self.chunks.pop(cid, None)
            freed += len(blob or b"")
        return freed

    def capacity(self) -> Capacity:
        used = sum(len(b) for b in self.chunks.values())
        return Capacity(total=1 << 30, used=used, free=(1 << 30) - used)


class MemSession(WriteSession):
    def __init__(self, store: MemStore) -> None:
        self.store = store
        self.pending: dict[bytes, bytes] = {}

    def put_chunk(self, chunk_id: bytes, blob: bytes) -> None:
        with self.store.lock:
            self.pending[chunk_id] = blob

    def commit(self) -> None:
        with self.store.lock:
            self.store.chunks.update(self.pending)
            self.pending.clear()

    def abort(self) -> None:
        self.pending.clear()


class MemMedia(MediaPlugin):
    name = "memdisk"
    title = "in-memory test medium"

    def __init__(self) -> None:
        self.stores: dict[str, MemStore] = {}

    def pool_options(self) -> list[OptionSpec]:
        return [OptionSpec("path", "path", "where the pool lives")]

    def create(self, pool: PoolInfo, ctx: PluginContext) -> MediaStore:
        key = str(pool.options["path"])
        if key in self.stores:
            raise PluginError(f"{key} already holds a pool")
        self.stores[key] = MemStore()
        return self.stores[key]

    def open(self, pool: PoolInfo, ctx: PluginContext) -> MediaStore:
        try:
            return self.stores[str(pool.options["path"])]
        except KeyError:
            raise PluginError(f"no pool at {pool.options['path']}") from None


class FakeFiles(ApplicationPlugin):
    """Backs up ``self.files`` (path -> bytes); restores into a target folder."""

    name = "fakefiles"
    title = "scriptable test source"

    def __init__(self) -> None:
        self.files: dict[bytes, bytes] = {}
        self.mtimes: dict[bytes, int] = {}
        self.fail_at: bytes | None = None  # raise PluginError when reaching this path
        self.gate: threading.Event | None = None  # wait here before the second file
        self.reached_gate = threading.Event()
        self.calls: list[str] = []
        self.incremental = True
        self.thaw_error: str | None = None
        self.levels: list[str] = []

    def capabilities(self) -> set[str]:
        return {"incremental"} if self.incremental else set()

    def job_options(self) -> list[OptionSpec]:
        return [OptionSpec("paths", "list[str]")]

    def discover(self, endpoint: EndpointInfo | None, ctx: PluginContext) -> list[AssetInfo]:
        return [AssetInfo("host", "testhost", "host:testhost")]

    def freeze(self, asset: AssetInfo, ctx: PluginContext) -> None:
        self.calls.append("freeze")

    def thaw(self, asset: AssetInfo, ctx: PluginContext) -> None:
        self.calls.append("thaw")
        if self.thaw_error:
            raise PluginError(self.thaw_error)

    def backup(self, request: BackupRequest, sink: Any, ctx: PluginContext) -> BackupResult:
        self.calls.append("backup")
        self.levels.append(request.level)
        ctx.logger.info("fake backup of %d files", len(self.files))
        ctx.progress.set_total(sum(len(d) for d in self.files.values()), len(self.files))
        for n, (path, data) in enumerate(sorted(self.files.items())):
            if n == 1 and self.gate is not None:
                self.reached_gate.set()
                assert self.gate.wait(30)
            ctx.check_canceled()
            if path == self.fail_at:
                raise PluginError(f"cannot read {path.decode()}")
            mtime = self.mtimes.get(path, 1)
            item = Item(
                path=path, kind=ItemKind.FILE, mode=0o100644, size=len(data), mtime_ns=mtime
            )
            old = sink.parent.lookup(path) if sink.parent else None
            if old is not None and old.size == len(data) and old.mtime_ns == mtime:
                item.chunks = list(old.chunks)
                sink.add(item)
                continue
            w = sink.open_file(item)
            w.write(data)
            w.close()
        return BackupResult(metadata={"files": len(self.files)})

    def restore(
        self, request: RestoreRequest, source: RestoreSource, ctx: PluginContext
    ) -> RestoreResult:
        result = RestoreResult()
        assert request.target is not None
        for item in source.items(request.paths):
            if item.kind != ItemKind.FILE:
                continue
            dest = Path(request.target) / item.path.decode()
            dest.parent.mkdir(parents=True, exist_ok=True)
            with source.open(item) as f:
                data = f.read()
            dest.write_bytes(data)
            result.items_restored += 1
            result.bytes_restored += len(data)
            ctx.progress.advance(len(data), 1, item.path.decode())
        return result


class FakePlugins:
    """The registration and event hooks, as one plugin object."""

    __name__ = "fake_plugins"

    def __init__(self) -> None:
        self.media = MemMedia()
        self.files = FakeFiles()
        self.events: list[tuple[str, dict[str, Any]]] = []

    @hookimpl
    def tapir_media_plugins(self) -> list[MediaPlugin]:
        return [self.media]

    @hookimpl
    def tapir_application_plugins(self) -> list[ApplicationPlugin]:
        return [self.files]

    @hookimpl
    def tapir_run_started(self, run: dict[str, Any]) -> None:
        self.events.append(("run_started", dict(run)))

    @hookimpl
    def tapir_run_finished(self, run: dict[str, Any]) -> None:
        self.events.append(("run_finished", dict(run)))

    @hookimpl
    def tapir_before_snapshot(self, asset: AssetInfo, run: dict[str, Any]) -> None:
        self.events.append(("before_snapshot", {"asset": asset.name}))

    @hookimpl
    def tapir_after_snapshot(self, asset: AssetInfo, run: dict[str, Any], ok: bool) -> None:
        self.events.append(("after_snapshot", {"asset": asset.name, "ok": ok}))
