"""Fixtures of the throughput tests: real repositories, real disk pools in tmp folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tapir.appliance.datapath.chunker import ChunkerParams
from tapir.appliance.datapath.repository import Repository
from tapir.appliance.datapath.sink import RecoveryPointWriter
from tapir.appliance.plugin_api.testing.memory_store import MemoryStore

SMALL_FILE_CHUNKER = ChunkerParams(min_size=4096, avg_size=16384, max_size=65536)
SMALL_ITEM_CHUNKER = ChunkerParams(min_size=1024, avg_size=4096, max_size=16384)


@pytest.fixture
def master_key() -> bytes:
    return os.urandom(32)


@pytest.fixture(params=[False, True], ids=["plain", "encrypted"])
def encrypted(request: pytest.FixtureRequest) -> bool:
    return request.param


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def repo(store: MemoryStore, master_key: bytes, encrypted: bool) -> Repository:
    return Repository.initialize(
        store,
        master_key=master_key,
        encrypted=encrypted,
        file_chunker=SMALL_FILE_CHUNKER,
        item_chunker=SMALL_ITEM_CHUNKER,
    )


def make_writer(repo: Repository, **kw: object) -> RecoveryPointWriter:
    kw.setdefault("workers", 2)
    return RecoveryPointWriter(
        repo,
        asset={"plugin": "test", "kind": "dir", "name": "t", "external_id": "t"},
        kind="files",
        level="full",
        job="job1",
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A small real tree: nested folders of small files and a few larger ones."""
    root = tmp_path / "src"
    rng = __import__("random").Random(7)
    for d in range(4):
        for s in range(3):
            folder = root / f"d{d}" / f"s{s}"
            folder.mkdir(parents=True)
            for f in range(6):
                (folder / f"f{f}").write_bytes(rng.randbytes(rng.randint(0, 5000)))
    (root / "big").write_bytes(rng.randbytes(3_000_000))
    (root / "zeros").write_bytes(bytes(2_000_000))
    return root
