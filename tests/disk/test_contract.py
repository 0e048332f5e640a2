"""The media contract kit, run on the disk store (and on the memory store, to check the kit)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import pytest

from tapir.appliance.plugin_api import Capacity, MediaStore, WriteSession
from tapir.appliance.plugin_api.testing.media_contract import MediaStoreContract
from tapir.appliance.plugin_api.testing.memory_store import MemoryStore
from tapir.plugins.disk.store import DiskStore


class TestDiskStoreContract(MediaStoreContract):
    @pytest.fixture
    def store(self, make_pool: Callable[..., DiskStore]) -> Iterator[MediaStore]:
        yield make_pool()


class TestDiskStoreContractAcrossOpens(MediaStoreContract):
    """Reads go through a second store on the same folder, as another process would."""

    @pytest.fixture
    def store(self, make_pool: Callable[..., DiskStore]) -> Iterator[MediaStore]:
        writer = make_pool()
        reader = make_pool(writer.path)
        yield _SplitStore(writer, reader)


class TestMemoryStoreContract(MediaStoreContract):
    @pytest.fixture
    def store(self) -> Iterator[MediaStore]:
        yield MemoryStore()


class _SplitStore(MediaStore):
    """Writes through one DiskStore, reads through another opened on the same pool."""

    def __init__(self, writer: DiskStore, reader: DiskStore) -> None:
        self.writer, self.reader = writer, reader

    def get_config(self, name: str) -> bytes | None:
        return self.reader.get_config(name)

    def put_config(self, name: str, data: bytes) -> None:
        self.writer.put_config(name, data)

    def begin(self) -> WriteSession:
        return self.writer.begin()

    def has_chunk(self, chunk_id: bytes) -> bool:
        return self.reader.has_chunk(chunk_id)

    def get_chunk(self, chunk_id: bytes) -> bytes:
        return self.reader.get_chunk(chunk_id)

    def chunk_ids(self) -> Iterator[bytes]:
        return self.reader.chunk_ids()

    def put_manifest(self, name: str, blob: bytes) -> None:
        self.writer.put_manifest(name, blob)

    def get_manifest(self, name: str) -> bytes:
        return self.reader.get_manifest(name)

    def manifests(self) -> list[str]:
        return self.reader.manifests()

    def delete_manifest(self, name: str) -> None:
        self.writer.delete_manifest(name)

    def delete_chunks(self, chunk_ids: Iterable[bytes]) -> int:
        return self.writer.delete_chunks(chunk_ids)

    def capacity(self) -> Capacity:
        return self.reader.capacity()
