"""The files plugin's cheaper paths: no hole search in dense files, large reads, item copies."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from tapir.appliance.datapath.sink import _copy_item
from tapir.appliance.plugin_api import BackupRequest, ChunkRef, Item, ItemKind, PluginContext
from tapir.appliance.plugin_api.testing.memory_sink import MemorySink
from tapir.plugins.files import reader as reader_mod
from tapir.plugins.files.plugin import FilesPlugin

ASSET = {"plugin": "files", "kind": "host", "name": "h", "external_id": "files:h"}


def rel(path: Path) -> bytes:
    return os.fsencode(path).lstrip(b"/")


def backup(paths: list[Path]) -> MemorySink:
    sink = MemorySink()
    request = BackupRequest(ASSET, "full", {"paths": [str(p) for p in paths]})
    FilesPlugin().backup(request, sink, PluginContext(logger=logging.getLogger("t")))
    sink.check_complete()
    return sink


def test_dense_files_are_read_without_looking_for_holes(tmp_path: Path, monkeypatch) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "dense").write_bytes(b"a" * 100_000 + bytes(300_000) + b"b" * 100)
    seeks: list[int] = []
    real = os.lseek

    def lseek(fd: int, pos: int, how: int) -> int:
        seeks.append(how)
        return real(fd, pos, how)

    monkeypatch.setattr(reader_mod.os, "lseek", lseek)
    sink = backup([src])
    assert sink.file_bytes(rel(src / "dense")) == (src / "dense").read_bytes()
    assert not seeks  # every block allocated: no SEEK_DATA / SEEK_HOLE


def test_sparse_files_still_keep_their_holes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "sparse", "wb") as f:
        f.write(b"head")
        f.seek(64 * 1024 * 1024)
        f.write(b"tail")
    sink = backup([src])
    item = sink.item(rel(src / "sparse"))
    assert item.size == 64 * 1024 * 1024 + 4
    assert any(ref.id is None and ref.length > 1024 * 1024 for ref in item.chunks)
    assert sink.file_bytes(rel(src / "sparse")) == (src / "sparse").read_bytes()


def test_large_files_round_trip_across_block_sizes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    data = os.urandom(reader_mod.FIRST_BLOCK + 2 * reader_mod.BLOCK + 12345)
    (src / "big").write_bytes(data)
    sink = backup([src])
    assert sink.file_bytes(rel(src / "big")) == data


def test_item_copy_is_equal_and_independent() -> None:
    item = Item(
        path=b"a/b",
        kind=ItemKind.FILE,
        mode=0o644,
        size=3,
        chunks=[ChunkRef(b"x" * 32, 3)],
        flags=["f"],
        xattrs={b"user.k": b"v"},
        extra={"e": 1},
    )
    copy = _copy_item(item)
    assert copy == item and copy is not item
    copy.chunks.append(ChunkRef(None, 1))
    copy.flags.append("g")
    copy.xattrs[b"user.z"] = b"1"
    copy.extra["z"] = 2
    assert item.chunks == [ChunkRef(b"x" * 32, 3)] and item.flags == ["f"]
    assert item.xattrs == {b"user.k": b"v"} and item.extra == {"e": 1}
