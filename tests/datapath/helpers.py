"""Small source-plugin stand-ins used by the data path tests."""

from __future__ import annotations

import random
import threading

from tapir.appliance.datapath.manifest import Manifest
from tapir.appliance.datapath.reader import RecoveryPointReader
from tapir.appliance.datapath.repository import Repository
from tapir.appliance.datapath.sink import RecoveryPointWriter
from tapir.appliance.plugin_api.items import Item, ItemKind
from tapir.appliance.plugin_api.testing.memory_store import MemoryStore

Tree = dict[bytes, bytes | None]  # path -> file data, None for a directory


def writer(repo: Repository, parent: Manifest | None = None, **kw: object) -> RecoveryPointWriter:
    kw.setdefault("workers", 2)
    return RecoveryPointWriter(
        repo,
        asset={"plugin": "test", "kind": "dir", "name": "t", "external_id": "t"},
        kind="files",
        level="incremental" if parent else "full",
        job="job1",
        parent=parent,
        **kw,  # type: ignore[arg-type]
    )


def write_tree(sink: RecoveryPointWriter, tree: Tree, seed: int = 0) -> dict[str, int]:
    """Back up ``tree`` the way a files plugin would: unchanged files from the parent."""
    rng = random.Random(seed)
    counts = {"reused": 0, "written": 0}
    for path, data in tree.items():
        if data is None:
            sink.add(Item(path=path, kind=ItemKind.DIRECTORY, mode=0o40755))
            continue
        old = sink.parent.lookup(path) if sink.parent else None
        if old is not None and old.size == len(data) and old.extra.get("seed") == hash(data):
            sink.add(old)
            counts["reused"] += 1
            continue
        fw = sink.open_file(
            Item(path=path, kind=ItemKind.FILE, mode=0o100644, extra={"seed": hash(data)})
        )
        pos = 0
        while pos < len(data):
            step = rng.choice([1, 100, 4096, 65536, 300000])
            fw.write(data[pos : pos + step])
            pos += step
        fw.close()
        counts["written"] += 1
    return counts


def backup(repo: Repository, tree: Tree, parent: Manifest | None = None) -> Manifest:
    sink = writer(repo, parent)
    write_tree(sink, tree)
    return sink.finish({"source": "test"}, ["plugin warning"])


def restore(repo: Repository, manifest: Manifest | str) -> Tree:
    reader = RecoveryPointReader(repo, manifest)
    out: Tree = {}
    for item in reader.items():
        out[item.path] = None if item.kind == ItemKind.DIRECTORY else reader.open(item).read()
    return out


class CountingStore(MemoryStore):
    """A memory medium that counts chunk reads and can slow or block writes."""

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.gets: list[bytes] = []
        self.gate: threading.Event | None = None
        self.puts_started = 0
        self._count_lock = threading.Lock()

    def get_chunk(self, chunk_id: bytes) -> bytes:
        self.gets.append(chunk_id)
        return super().get_chunk(chunk_id)

    def begin(self):  # type: ignore[override]
        session = super().begin()
        original = session.put_chunk

        def put_chunk(chunk_id: bytes, blob: bytes) -> None:
            with self._count_lock:
                self.puts_started += 1
            if self.gate is not None:
                self.gate.wait(10)
            original(chunk_id, blob)

        session.put_chunk = put_chunk  # type: ignore[method-assign]
        return session


class RecordingProgress:
    def __init__(self) -> None:
        self.bytes_done = 0
        self.items_done = 0
        self.current: list[str] = []

    def set_total(self, bytes_total: int | None = None, items_total: int | None = None) -> None:
        pass

    def advance(self, bytes_done: int = 0, items_done: int = 0, current: str | None = None) -> None:
        self.bytes_done += bytes_done
        self.items_done += items_done
        if current:
            self.current.append(current)
