"""RecoveryPointReader: item selection, sequential and random-access reads."""

from __future__ import annotations

import io
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tapir.appliance.datapath.reader import RecoveryPointReader, path_selected
from tapir.appliance.datapath.repository import Repository
from tapir.appliance.plugin_api.errors import ChunkCorrupt, TapirError
from tapir.appliance.plugin_api.items import ChunkRef, Item, ItemKind

from .conftest import SMALL_DISK_CHUNK
from .helpers import CountingStore, backup, writer

CS = SMALL_DISK_CHUNK


@pytest.fixture
def tree_repo(repo: Repository):
    tree = {
        b"etc": None,
        b"etc/passwd": b"root:x:0:0\n",
        b"etc/ssh": None,
        b"etc/ssh/sshd_config": b"Port 22\n" * 1000,
        b"etcetera": b"not below etc",
        b"home": None,
        b"home/\xe9l\xe8ve": b"\x00\x01" * 30000,
    }
    return repo, backup(repo, tree), tree


def test_items_with_and_without_filter(tree_repo) -> None:
    repo, manifest, tree = tree_repo
    reader = RecoveryPointReader(repo, manifest.id)
    assert reader.recovery_point_id == manifest.id
    assert [i.path for i in reader.items()] == list(tree)
    assert [i.path for i in reader.items([b"etc"])] == [
        b"etc",
        b"etc/passwd",
        b"etc/ssh",
        b"etc/ssh/sshd_config",
    ]
    assert [i.path for i in reader.items([b"etc/ssh/", b"home/\xe9l\xe8ve"])] == [
        b"etc/ssh",
        b"etc/ssh/sshd_config",
        b"home/\xe9l\xe8ve",
    ]
    assert list(reader.items([b"nothing"])) == []
    assert len(list(reader.items([b""]))) == len(tree)
    with pytest.raises(TypeError):
        list(reader.items(["etc"]))  # type: ignore[list-item]


def test_path_selected() -> None:
    assert path_selected(b"a/b", [b"a"])
    assert not path_selected(b"ab", [b"a"])
    assert path_selected(b"x", [b""])


def test_open_reads_and_seeks(tree_repo) -> None:
    repo, manifest, tree = tree_repo
    reader = RecoveryPointReader(repo, manifest)
    item = next(reader.items([b"home/\xe9l\xe8ve"]))
    stream = reader.open(item)
    assert stream.read(3) == tree[item.path][:3]
    stream.seek(50001)
    assert stream.read(10) == tree[item.path][50001:50011]
    stream.seek(-4, io.SEEK_END)
    assert stream.read() == tree[item.path][-4:]
    stream.seek(0)
    assert stream.read() == tree[item.path]
    directory = next(reader.items([b"etc"]))
    assert reader.open(directory).read() == b""


def test_read_chunk_is_verified(tree_repo) -> None:
    repo, manifest, tree = tree_repo
    reader = RecoveryPointReader(repo, manifest)
    item = next(reader.items([b"etc/passwd"]))
    assert reader.read_chunk(item.chunks[0].id) == tree[b"etc/passwd"]


def test_chunk_length_mismatch_is_corruption(tree_repo) -> None:
    repo, manifest, _tree = tree_repo
    reader = RecoveryPointReader(repo, manifest)
    item = next(reader.items([b"etc/passwd"]))
    lying = Item(path=b"x", kind=ItemKind.FILE, size=5, chunks=[ChunkRef(item.chunks[0].id, 5)])
    with pytest.raises(ChunkCorrupt, match="where the item expects 5"):
        reader.open(lying).read()


@pytest.fixture
def disk_setup(master_key: bytes):
    store = CountingStore()
    repo = Repository.initialize(store, master_key=master_key, encrypted=True, disk_chunk_size=CS)
    rng = random.Random(11)
    data = bytearray(20 * CS + 999)
    for index in (0, 1, 5, 6, 7, 19, 20):
        data[index * CS : (index + 1) * CS] = rng.randbytes(CS)[: len(data) - index * CS]
    sink = writer(repo)
    sink.add_disk(
        Item(path=b"disk", kind=ItemKind.DISK, size=len(data)),
        lambda o, n: bytes(data[o : o + n]),
    )
    manifest = sink.finish()
    reader = RecoveryPointReader(repo, manifest, cache_chunks=2)
    item = next(reader.items())
    return store, reader, item, bytes(data)


def test_open_disk_pread_fetches_only_touched_chunks(disk_setup) -> None:
    store, reader, item, data = disk_setup
    disk = reader.open_disk(item)
    assert disk.size == len(data)
    store.gets.clear()
    assert disk.pread(5 * CS - 10, 20) == data[5 * CS - 10 : 5 * CS + 10]
    assert len(store.gets) == 1  # chunk 4 is a hole, chunk 5 fetched
    assert disk.pread(5 * CS + 100, 50) == data[5 * CS + 100 : 5 * CS + 150]
    assert len(store.gets) == 1  # served from the cache
    assert disk.pread(len(data) - 5, 100) == data[-5:]  # short only at the end
    assert disk.pread(len(data), 10) == b""
    assert disk.pread(10 * CS, 3 * CS) == bytes(3 * CS)  # holes read as zeros
    with pytest.raises(ValueError):
        disk.pread(-1, 5)


# The fixture is read-only here, so sharing it between examples is intended.
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(offset=st.integers(0, 21 * CS), length=st.integers(0, 3 * CS))
def test_pread_matches_the_disk(disk_setup, offset: int, length: int) -> None:
    _, reader, item, data = disk_setup
    assert reader.open_disk(item).pread(offset, length) == data[offset : offset + length]


def test_open_disk_refuses_non_disk(tree_repo) -> None:
    repo, manifest, _ = tree_repo
    reader = RecoveryPointReader(repo, manifest)
    with pytest.raises(TapirError, match="not a disk"):
        reader.open_disk(next(reader.items()))
