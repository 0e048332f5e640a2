"""Fixtures of the data path tests: real repositories on an in-memory medium."""

from __future__ import annotations

import os
import random
from collections.abc import Callable

import pytest

from tapir.appliance.datapath.chunker import ChunkerParams
from tapir.appliance.datapath.repository import Repository
from tapir.appliance.plugin_api.testing.memory_store import MemoryStore

# Small sizes keep tests fast while still producing many chunks per file.
SMALL_FILE_CHUNKER = ChunkerParams(min_size=4096, avg_size=16384, max_size=65536)
SMALL_ITEM_CHUNKER = ChunkerParams(min_size=1024, avg_size=4096, max_size=16384)
SMALL_DISK_CHUNK = 64 * 1024


@pytest.fixture
def master_key() -> bytes:
    return os.urandom(32)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture(params=[False, True], ids=["plain", "encrypted"])
def encrypted(request: pytest.FixtureRequest) -> bool:
    return request.param


@pytest.fixture
def repo(store: MemoryStore, master_key: bytes, encrypted: bool) -> Repository:
    """A repository with small chunk sizes, plain and encrypted."""
    return Repository.initialize(
        store,
        master_key=master_key,
        encrypted=encrypted,
        file_chunker=SMALL_FILE_CHUNKER,
        item_chunker=SMALL_ITEM_CHUNKER,
        disk_chunk_size=SMALL_DISK_CHUNK,
    )


@pytest.fixture
def rng() -> random.Random:
    return random.Random(20240517)


@pytest.fixture
def random_bytes(rng: random.Random) -> Callable[[int], bytes]:
    """Deterministic pseudo-random bytes (incompressible)."""
    return lambda n: rng.randbytes(n)
