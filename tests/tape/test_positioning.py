"""A restore goes straight to the tape files it needs instead of reading the tape from BOT."""

from __future__ import annotations

from pathlib import Path

import pytest

from tapir.appliance.engine.service import Appliance
from tapir.hardware.cdb import SpaceCode
from tapir.hardware.drive import TapeDrive

from .conftest import MakePool, add_volumes, make_tree, restored, tree


class Counter:
    """Counts the READ and SPACE commands every TapeDrive sends."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reads = 0
        self.filemark_spaces = 0
        self.block_spaces = 0
        read, space = TapeDrive.read, TapeDrive.space

        def counting_read(drive: TapeDrive, max_bytes: int | None = None) -> bytes:
            self.reads += 1
            return read(drive, max_bytes)

        def counting_space(drive: TapeDrive, code: SpaceCode, count: int = 0) -> None:
            if code == SpaceCode.FILEMARKS:
                self.filemark_spaces += 1
            elif code == SpaceCode.BLOCKS:
                self.block_spaces += 1
            return space(drive, code, count)

        monkeypatch.setattr(TapeDrive, "read", counting_read)
        monkeypatch.setattr(TapeDrive, "space", counting_space)


def test_restore_reads_only_the_files_it_needs(
    app: Appliance, make_pool: MakePool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_volumes(app, ["TAP001L8"])
    make_pool("tape1")
    sources = {}
    for name, size in (("big1", 5 << 20), ("big2", 5 << 20), ("small", 100_000)):
        sources[name] = make_tree(tmp_path / name, size)
        app.create_job(name, "files", "tape1", options={"paths": [str(sources[name])]})
        run = app.run_job(name)
        assert run.state == "succeeded", run.error
    vols = app.plugin_context("tape").volumes
    assert vols is not None
    [vol] = vols.list(pool="tape1")
    blocks_on_tape = vol.bytes_used // 65536
    assert blocks_on_tape > 160

    counter = Counter(monkeypatch)
    [rp] = app.recovery_points(job="small")
    assert restored(app, rp.id, tmp_path / "out", sources["small"]) == tree(sources["small"])
    # The last session's files are reached by spacing over filemarks; only the
    # media label, the item stream and the small tree's chunks are read.
    assert counter.filemark_spaces >= 1
    assert counter.reads < 20 < blocks_on_tape // 8

    # Restoring the second big tree skips the first one's archive: reading from the
    # start of the tape would read at least both archives (2 x own_blocks). Chunks
    # reach the archive in the order the sealing threads finish, so a restore in
    # item order steps back now and then: the count varies a little from run to run.
    counter.reads = 0
    [rp2] = app.recovery_points(job="big2")
    assert restored(app, rp2.id, tmp_path / "out2", sources["big2"]) == tree(sources["big2"])
    own_blocks = (5 << 20) // 65536
    assert own_blocks <= counter.reads < 2 * own_blocks
