"""Restore never writes outside its target, and never leaves a silently wrong file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tapir.appliance.plugin_api import Item, ItemKind, PluginError
from tapir.appliance.plugin_api.testing.memory_sink import (
    MemoryRestoreSource,
    MemorySink,
    chunk_id_of,
)

from .helpers import rel, run_backup, run_restore


def file_item(path: bytes, data: bytes) -> tuple[Item, dict[bytes, bytes]]:
    from tapir.appliance.plugin_api import ChunkRef

    cid = chunk_id_of(data)
    return Item(
        path, ItemKind.FILE, mode=0o644, size=len(data), chunks=[ChunkRef(cid, len(data))]
    ), {cid: data}


def everything_below(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    return folder


def test_hostile_paths_are_refused(plugin, ctx, tmp_path, outside):
    target = tmp_path / "target" / "deeper"
    target.mkdir(parents=True)
    items: list[Item] = []
    chunks: dict[bytes, bytes] = {}
    for path in (
        b"../x",
        b"../../outside/x",
        b"a/../../outside/y",
        os.fsencode(outside) + b"/abs",
        b"/etc/tapir-should-not-exist",
        b"ok/fine.txt",
    ):
        item, data = file_item(path, b"payload")
        items.append(item)
        chunks.update(data)
    # A symlink restored first, then entries below it.
    items.append(Item(b"evil", ItemKind.SYMLINK, target=os.fsencode(outside)))
    for extra in (
        file_item(b"evil/through-link", b"payload")[0],
        Item(b"evil/dir", ItemKind.DIRECTORY, mode=0o755),
        Item(b"evil/fifo", ItemKind.FIFO, mode=0o644),
        Item(b"evil/sym", ItemKind.SYMLINK, target=b"x"),
        Item(b"hl", ItemKind.HARDLINK, target=b"../../outside/victim"),
        Item(b"evil/hl", ItemKind.HARDLINK, target=b"ok/fine.txt"),
    ):
        items.append(extra)
    source = MemoryRestoreSource.from_items(items, chunks)

    result = run_restore(plugin, ctx, source, target)

    assert everything_below(outside) == []
    assert not os.path.lexists("/etc/tapir-should-not-exist")
    assert everything_below(tmp_path / "target") == [
        "deeper",
        "deeper/evil",
        "deeper/ok",
        "deeper/ok/fine.txt",
    ]
    failed = {f.split(": ", 1)[0]: f for f in result.failed}
    assert len(result.failed) == 11
    assert "'..'" in failed["../x"] and "refused" in failed["../x"]
    assert "absolute" in failed["/etc/tapir-should-not-exist"]
    assert "symbolic link evil" in failed["evil/through-link"]
    assert "refused" in failed["hl"]
    assert result.items_restored == 2


def test_a_symlink_already_in_the_target_is_not_followed(plugin, ctx, tmp_path, outside):
    target = tmp_path / "target"
    target.mkdir()
    os.symlink(outside, target / "pre")
    item, chunks = file_item(b"pre/x", b"payload")
    result = run_restore(
        plugin, ctx, MemoryRestoreSource.from_items([item], chunks), target, overwrite="always"
    )
    assert everything_below(outside) == []
    assert "symbolic link pre" in result.failed[0]


def test_an_existing_symlink_at_a_file_path_is_replaced_not_written_through(
    plugin, ctx, tmp_path, outside
):
    target = tmp_path / "target"
    target.mkdir()
    (outside / "victim").write_text("untouched")
    os.symlink(outside / "victim", target / "f")
    item, chunks = file_item(b"f", b"restored")
    result = run_restore(
        plugin, ctx, MemoryRestoreSource.from_items([item], chunks), target, overwrite="always"
    )
    assert result.failed == []
    assert (outside / "victim").read_text() == "untouched"
    assert not (target / "f").is_symlink() and (target / "f").read_text() == "restored"


def test_damaged_chunks_fail_only_their_files(plugin, ctx, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "corrupt").write_bytes(os.urandom(200_000))
    (src / "missing").write_bytes(os.urandom(200_000))
    (src / "fine").write_bytes(b"all good")
    sink, _ = run_backup(plugin, ctx, [src])
    source = MemoryRestoreSource(sink)
    source.corrupt_chunk(sink.item(rel(src / "corrupt")).chunks[1].id)
    source.drop_chunk(sink.item(rel(src / "missing")).chunks[2].id)

    out = tmp_path / "out"
    result = run_restore(plugin, ctx, source, out)
    copy = out / rel(src).decode()
    assert (copy / "fine").read_text() == "all good"
    assert not (copy / "corrupt").exists() and not (copy / "missing").exists()
    assert (copy / "corrupt.tapir-incomplete").exists()
    assert len(result.failed) == 2
    corrupt = next(f for f in result.failed if "/corrupt:" in f)
    assert corrupt.startswith(rel(src / "corrupt").decode())
    assert "is corrupt" in corrupt and "corrupt.tapir-incomplete" in corrupt
    assert "is missing" in next(f for f in result.failed if "/missing:" in f)


def test_damaged_data_leaves_an_existing_file_untouched(plugin, ctx, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"backed up version")
    sink, _ = run_backup(plugin, ctx, [src])
    (src / "f").write_text("live version")
    source = MemoryRestoreSource(sink)
    source.corrupt_chunk(sink.item(rel(src / "f")).chunks[0].id)
    result = run_restore(plugin, ctx, source, None, in_place=True, overwrite="always")
    assert (src / "f").read_text() == "live version"
    assert len(result.failed) == 1


def test_size_mismatch_in_the_recovery_point_fails_the_file(plugin, ctx, tmp_path):
    item, chunks = file_item(b"f", b"12345")
    item.size = 10
    result = run_restore(
        plugin, ctx, MemoryRestoreSource.from_items([item], chunks), tmp_path / "t"
    )
    assert "holds 5 bytes for a file of 10" in result.failed[0]
    assert not (tmp_path / "t" / "f").exists()


def test_restore_needs_a_target_or_in_place(plugin, ctx):
    with pytest.raises(PluginError, match="target folder"):
        run_restore(plugin, ctx, MemorySink(), None)
    with pytest.raises(PluginError, match="overwrite"):
        run_restore(plugin, ctx, MemorySink(), Path("/tmp"), overwrite="sometimes")


def test_refused_attributes_warn_and_the_item_is_still_restored(plugin, ctx, tmp_path):
    # Linux refuses user.* attributes on symbolic links, as some file systems refuse all.
    link = Item(b"link", ItemKind.SYMLINK, target=b"somewhere", xattrs={b"user.note": b"x"})
    result = run_restore(plugin, ctx, MemoryRestoreSource.from_items([link]), tmp_path / "t")
    assert result.failed == []
    assert os.readlink(tmp_path / "t" / "link") == "somewhere"
    assert "extended attribute user.note not restored" in result.warnings[0]


def test_cancel_stops_the_restore(plugin, ctx, tmp_path):
    from tapir.appliance.plugin_api import RunCanceled

    items = [Item(b"d%d" % i, ItemKind.DIRECTORY, mode=0o755) for i in range(5)]

    def cancel() -> None:
        if (tmp_path / "t" / "d1").exists():
            raise RunCanceled("canceled")

    ctx.check_canceled = cancel
    with pytest.raises(RunCanceled):
        run_restore(plugin, ctx, MemoryRestoreSource.from_items(items), tmp_path / "t")
    assert not (tmp_path / "t" / "d2").exists()
