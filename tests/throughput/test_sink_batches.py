"""Small chunks travel to the worker pool in batches: same result, failures still seen."""

from __future__ import annotations

import gc
import random
import threading

import pytest

from tapir.appliance.datapath import sink as sink_mod
from tapir.appliance.datapath.reader import RecoveryPointReader
from tapir.appliance.datapath.repository import Repository
from tapir.appliance.plugin_api.errors import TapirError
from tapir.appliance.plugin_api.items import Item, ItemKind
from tapir.appliance.plugin_api.testing.memory_store import MemoryStore

from .conftest import make_writer


def restore(repo: Repository, manifest) -> dict[bytes, bytes | None]:
    reader = RecoveryPointReader(repo, manifest)
    return {
        item.path: None if item.kind == ItemKind.DIRECTORY else reader.open(item).read()
        for item in reader.items()
    }


def small_tree(count: int, seed: int = 1) -> dict[bytes, bytes | None]:
    rng = random.Random(seed)
    tree: dict[bytes, bytes | None] = {b"d": None}
    for i in range(count):
        tree[b"d/f%05d" % i] = rng.randbytes(rng.randint(0, 3000))
        if i % 50 == 0:
            tree[b"d/sub%05d" % i] = None
    return tree


def test_many_small_files_round_trip_in_order(repo: Repository) -> None:
    tree = small_tree(700)
    sink = make_writer(repo)
    for path, data in tree.items():
        if data is None:
            sink.add(Item(path=path, kind=ItemKind.DIRECTORY, mode=0o40755))
            continue
        with sink.open_file(Item(path=path, kind=ItemKind.FILE, mode=0o100644)) as fw:
            fw.write(data)
    manifest = sink.finish()
    restored = restore(repo, manifest)
    assert list(restored) == list(tree)  # item order is the order the plugin added them
    assert restored == tree
    assert manifest.items == len(tree)


def test_a_batch_holds_many_small_chunks(repo: Repository, monkeypatch) -> None:
    handed: list[int] = []
    original = sink_mod.RecoveryPointWriter._hand_over

    def spy(self, batch):  # type: ignore[no-untyped-def]
        handed.append(len(batch))
        return original(self, batch)

    monkeypatch.setattr(sink_mod.RecoveryPointWriter, "_hand_over", spy)
    sink = make_writer(repo)
    for i in range(300):
        with sink.open_file(Item(path=b"f%d" % i, kind=ItemKind.FILE, mode=0o100644)) as fw:
            fw.write(b"x%d" % i * 10)
    sink.finish()
    assert sum(handed) >= 300
    assert len(handed) <= 300 // sink_mod.BATCH_CHUNKS + 10  # batches, not one per chunk


class FailingStore(MemoryStore):
    """A medium whose session fails on the n-th chunk put."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.fail_at = fail_at
        self.puts = 0
        self._count = threading.Lock()

    def begin(self):  # type: ignore[override]
        session = super().begin()
        original = session.put_chunk

        def put_chunk(chunk_id: bytes, blob: bytes) -> None:
            with self._count:
                self.puts += 1
                fail = self.puts == self.fail_at
            if fail:
                raise OSError(5, "Input/output error")
            original(chunk_id, blob)

        session.put_chunk = put_chunk  # type: ignore[method-assign]
        return session


def test_a_failing_chunk_in_a_batch_fails_the_backup_and_keeps_nothing(master_key) -> None:
    store = FailingStore(fail_at=40)
    repo = Repository.initialize(store, master_key=master_key, encrypted=True)
    sink = make_writer(repo)
    with pytest.raises((OSError, TapirError)):
        for i in range(200):
            with sink.open_file(Item(path=b"f%d" % i, kind=ItemKind.FILE, mode=0o100644)) as fw:
                fw.write(random.Random(i).randbytes(500))
        sink.finish()
    sink.abort()
    assert repo.manifest_ids() == []
    assert list(store.chunk_ids()) == []  # the session was never committed


def test_gc_is_relaxed_while_a_writer_is_open_and_restored_after(repo: Repository) -> None:
    before = gc.get_threshold()
    first = make_writer(repo)
    assert gc.get_threshold()[0] >= 50_000
    assert gc.get_freeze_count() > 0
    second = make_writer(repo)  # a concurrent backup shares the setting
    first.finish()
    assert gc.get_threshold()[0] >= 50_000  # the other one still runs
    second.abort()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_a_writer_that_cannot_start_restores_gc(master_key) -> None:
    class Broken(MemoryStore):
        def begin(self):  # type: ignore[override]
            raise OSError(28, "No space left on device")

    before = gc.get_threshold()
    repo = Repository.initialize(Broken(), master_key=master_key, encrypted=False)
    with pytest.raises(OSError):
        make_writer(repo)
    assert gc.get_threshold() == before


def test_back_pressure_counts_batches(repo: Repository) -> None:
    gate = threading.Event()
    started = threading.Semaphore(0)
    store = repo.store
    original_begin = store.begin

    def begin():  # type: ignore[no-untyped-def]
        session = original_begin()
        put = session.put_chunk

        def slow_put(chunk_id: bytes, blob: bytes) -> None:
            started.release()
            gate.wait(10)
            put(chunk_id, blob)

        session.put_chunk = slow_put
        return session

    store.begin = begin  # type: ignore[method-assign]
    sink = make_writer(repo, workers=1, max_inflight_chunks=2)
    done = threading.Event()

    def plugin() -> None:
        for i in range(2000):
            with sink.open_file(Item(path=b"f%d" % i, kind=ItemKind.FILE, mode=0o100644)) as fw:
                fw.write(random.Random(i).randbytes(2000))
        done.set()

    thread = threading.Thread(target=plugin)
    thread.start()
    assert started.acquire(timeout=5)
    thread.join(0.5)
    assert not done.is_set()  # two batches in flight at most: the plugin waits
    gate.set()
    thread.join(30)
    assert done.is_set()
    manifest = sink.finish()
    assert manifest.items == 2000
