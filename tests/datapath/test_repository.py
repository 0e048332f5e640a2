"""Repository: format config, keys, chunk writing, manifests, export/import."""

from __future__ import annotations

import os
import threading

import msgpack
import pytest

from tapir.appliance.datapath.manifest import Manifest
from tapir.appliance.datapath.repository import CONFIG_NAME, Repository
from tapir.appliance.plugin_api.errors import ChunkCorrupt, ChunkMissing, MediaFull, TapirError
from tapir.appliance.plugin_api.testing.memory_store import MemoryStore


def test_initialize_writes_a_self_describing_config(
    repo: Repository, store: MemoryStore, encrypted: bool
) -> None:
    config = msgpack.unpackb(store.get_config(CONFIG_NAME))
    assert config["format"] == "tapir-repository"
    assert config["version"] == 1
    assert config["encrypted"] is encrypted
    assert config["compression"] == "zstd:3"
    assert config["file_chunker"] == {"min": 4096, "avg": 16384, "max": 65536}
    assert config["disk_chunk_size"] == 64 * 1024
    assert (config["keys"] is not None) is encrypted
    assert repo.encrypted is encrypted


def test_initialize_refuses_an_initialised_or_non_empty_medium(
    repo: Repository, store: MemoryStore, master_key: bytes
) -> None:
    with pytest.raises(TapirError, match="already holds a Tapir repository"):
        Repository.initialize(store, master_key=master_key, encrypted=False)
    other = MemoryStore()
    session = other.begin()
    session.put_chunk(b"\x00" * 32, b"data")
    session.commit()
    with pytest.raises(TapirError, match="not empty"):
        Repository.initialize(other, master_key=master_key, encrypted=False)


def test_initialize_refuses_bad_compression(master_key: bytes) -> None:
    store = MemoryStore()
    with pytest.raises(TapirError, match="unknown compression"):
        Repository.initialize(store, master_key=master_key, encrypted=False, compression="lzma")
    assert store.get_config(CONFIG_NAME) is None


def test_open_reads_the_config(repo: Repository, store: MemoryStore, master_key: bytes) -> None:
    again = Repository.open(store, master_key=master_key)
    assert again.keys == repo.keys
    assert again.file_chunker == repo.file_chunker
    assert again.disk_chunk_size == repo.disk_chunk_size
    assert again.chunk_id(b"x") == repo.chunk_id(b"x")


def test_open_with_wrong_master_key(store: MemoryStore, master_key: bytes) -> None:
    Repository.initialize(store, master_key=master_key, encrypted=True)
    with pytest.raises(TapirError, match="master key cannot unwrap"):
        Repository.open(store, master_key=os.urandom(32))


def test_open_refuses_missing_foreign_or_future_configs(master_key: bytes) -> None:
    store = MemoryStore()
    with pytest.raises(TapirError, match="not initialised"):
        Repository.open(store, master_key=master_key)
    store.put_config(CONFIG_NAME, b"\xc1garbage")
    with pytest.raises(TapirError, match="damaged"):
        Repository.open(store, master_key=master_key)
    store.put_config(CONFIG_NAME, msgpack.packb({"format": "borg"}))
    with pytest.raises(TapirError, match="not a Tapir repository"):
        Repository.open(store, master_key=master_key)
    Repository.initialize(fresh := MemoryStore(), master_key=master_key, encrypted=False)
    config = msgpack.unpackb(fresh.get_config(CONFIG_NAME))
    config["version"] = 7
    fresh.put_config(CONFIG_NAME, msgpack.packb(config))
    with pytest.raises(TapirError, match="version 7 is not supported"):
        Repository.open(fresh, master_key=master_key)


def test_chunk_ids_are_keyed_only_when_encrypted(repo: Repository, encrypted: bool) -> None:
    import blake3

    plain_id = blake3.blake3(b"data").digest()
    assert (repo.chunk_id(b"data") == plain_id) is not encrypted


def test_chunk_writer_dedups_within_session_and_against_pool(repo: Repository) -> None:
    writer = repo.writer()
    first = writer.store(b"a" * 5000)
    second = writer.store(b"a" * 5000)
    assert first.new and first.sealed_length > 0
    assert not second.new and second.sealed_length == 0 and second.id == first.id
    writer.commit()
    assert repo.load_chunk(first.id) == b"a" * 5000
    later = repo.writer()
    third = later.store(b"a" * 5000)
    assert not third.new
    later.commit()
    assert writer.chunks_new == 1 and writer.chunks_dedup == 1


def test_chunk_writer_is_thread_safe(repo: Repository, store: MemoryStore) -> None:
    writer = repo.writer()
    blocks = [os.urandom(3000) for _ in range(20)]
    results = []

    def work() -> None:
        for block in blocks:
            results.append(writer.store(block))

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.commit()
    assert sum(r.new for r in results) == 20
    assert len(list(store.chunk_ids())) == 20
    assert writer.bytes_new == sum(r.sealed_length for r in results)


def test_aborted_writer_leaves_nothing(repo: Repository, store: MemoryStore) -> None:
    writer = repo.writer()
    writer.store(b"x" * 100)
    writer.abort()
    assert list(store.chunk_ids()) == []
    with pytest.raises(TapirError, match="aborted"):
        writer.store(b"y")


def test_writer_error_propagates_and_releases_claim(master_key: bytes) -> None:
    store = MemoryStore(capacity_bytes=2000)
    repo = Repository.initialize(store, master_key=master_key, encrypted=False)
    writer = repo.writer()
    with pytest.raises(MediaFull):
        writer.store(os.urandom(5000))
    assert not writer.is_known(repo.chunk_id(b""))


def test_load_chunk_missing_and_corrupt(repo: Repository, store: MemoryStore) -> None:
    writer = repo.writer()
    stored = writer.store(b"payload" * 100)
    writer.commit()
    blob = bytearray(store.get_chunk(stored.id))
    blob[-1] ^= 0xFF
    store.tamper_chunk(stored.id, bytes(blob))
    with pytest.raises(ChunkCorrupt) as info:
        repo.load_chunk(stored.id)
    assert info.value.chunk_id == stored.id
    store.remove_chunk(stored.id)
    with pytest.raises(ChunkMissing):
        repo.load_chunk(stored.id)


def manifest(name: str = "rp1") -> Manifest:
    return Manifest(
        id=name,
        asset={"name": "a"},
        kind="files",
        level="full",
        created_at="2024-05-17T00:00:00+00:00",
        metadata={"lsn": 42},
    )


def test_manifest_round_trip(repo: Repository, store: MemoryStore, encrypted: bool) -> None:
    repo.write_manifest(manifest())
    assert repo.manifest_ids() == ["rp1"]
    assert repo.read_manifest("rp1") == manifest()
    if encrypted:
        assert b"lsn" not in store.get_manifest("rp1")
    repo.delete_manifest("rp1")
    with pytest.raises(FileNotFoundError):
        repo.read_manifest("rp1")


def test_damaged_or_renamed_manifest_is_refused(repo: Repository, store: MemoryStore) -> None:
    repo.write_manifest(manifest("rp1"))
    blob = bytearray(store.get_manifest("rp1"))
    store.put_manifest("rp2", bytes(blob))
    with pytest.raises(TapirError, match="stored as rp2 names recovery point rp1"):
        repo.read_manifest("rp2")
    blob[40] ^= 1
    store.put_manifest("rp1", bytes(blob))
    with pytest.raises(TapirError, match="manifest rp1 is damaged"):
        repo.read_manifest("rp1")
    store.put_manifest("rp3", b"short")
    with pytest.raises(TapirError, match="truncated"):
        repo.read_manifest("rp3")


def test_export_and_import_key_on_a_new_appliance(store: MemoryStore, master_key: bytes) -> None:
    repo = Repository.initialize(store, master_key=master_key, encrypted=True)
    writer = repo.writer()
    stored = writer.store(b"precious" * 50)
    writer.commit()
    exported = repo.export_key("passphrase")
    new_master = os.urandom(32)
    with pytest.raises(TapirError):
        Repository.open(store, master_key=new_master)
    with pytest.raises(TapirError, match="wrong passphrase"):
        Repository.import_key(store, exported, "guess", master_key=new_master)
    Repository.import_key(store, exported, "passphrase", master_key=new_master)
    reopened = Repository.open(store, master_key=new_master)
    assert reopened.load_chunk(stored.id) == b"precious" * 50


def test_import_key_of_another_pool_is_refused(master_key: bytes) -> None:
    a = Repository.initialize(MemoryStore(), master_key=master_key, encrypted=True)
    other_store = MemoryStore()
    Repository.initialize(other_store, master_key=master_key, encrypted=True)
    before = other_store.get_config(CONFIG_NAME)
    with pytest.raises(TapirError, match="belongs to another pool"):
        Repository.import_key(other_store, a.export_key("pw"), "pw", master_key=master_key)
    assert other_store.get_config(CONFIG_NAME) == before  # nothing lost


def test_unencrypted_pool_has_no_key(master_key: bytes) -> None:
    store = MemoryStore()
    repo = Repository.initialize(store, master_key=master_key, encrypted=False)
    with pytest.raises(TapirError, match="not encrypted"):
        repo.export_key("pw")
    with pytest.raises(TapirError, match="not encrypted"):
        Repository.import_key(store, b"TAPIRKEY", "pw", master_key=master_key)
