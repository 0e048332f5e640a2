"""A backup killed (kill -9) mid-write leaves a readable tape and a consistent index."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from vtl import VirtualLibrary

from tapir.appliance.engine.service import Appliance
from tapir.hardware.changer import MediaChanger
from tapir.hardware.drive import TapeDrive
from tapir.plugins.tape.blockio import TapeFileReader, locate, scan_volume
from tapir.plugins.tape.format import FileKind, TruncatedFile
from tapir.plugins.tape.index import TapeIndex
from tapir.plugins.tape.library import Library
from tapir.plugins.tape.options import PoolSettings
from tapir.plugins.tape.reader import TapeReader
from tapir.plugins.tape.store import pool_drives

from .conftest import MakePool, add_volumes, make_tree, restored, tree

HERE = Path(__file__).resolve().parent


def kill_mid_write(home: Path, job: str, blocks: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    child = subprocess.Popen(
        [sys.executable, str(HERE / "killed_writer.py"), str(home), job, str(blocks)],
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"WRITING"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)


def test_killed_backup_leaves_readable_tape_and_consistent_index(
    app: Appliance, make_pool: MakePool, vtl: VirtualLibrary, home: Path, tmp_path: Path
) -> None:
    add_volumes(app, ["TAP001L8", "TAP002L8"])
    make_pool("tape1", drives="lib1-d0")
    source = make_tree(tmp_path / "src", 1 << 20)
    app.create_job("home", "files", "tape1", options={"paths": [str(source)]})
    first = app.run_job("home")
    assert first.state == "succeeded", first.error
    (source / "more.bin").write_bytes(os.urandom(3 << 20))
    # 2 blocks of the manifest archive + catalog, then 10 blocks into the next chunk archive.
    kill_mid_write(home, "home", 10)

    index = TapeIndex(home / "state/tape/pools/tape1/index.sqlite")
    recorded = index.volume_records("TAP001L8")
    chunk_rows = list(index.chunk_ids())
    assert index.manifest_names() == [app.recovery_points(job="home")[0].id]

    # The tape: every file before the cut reads back whole; the cut file is truncated.
    with MediaChanger.open(vtl.changer_url) as changer:
        assert changer.locate("TAP001L8").name == "drive 0"  # left there by the dead run
        with TapeDrive.open(vtl.drive_urls[0], block_size=0) as d:
            d.wait_ready(timeout=10)
            d.set_block_size(0)
            files = scan_volume(d, 65536)
            kinds = [f.header.kind for f in files if f.header is not None]
            assert kinds == [
                FileKind.MEDIA_LABEL,
                FileKind.MEDIA_SET_LABEL,
                FileKind.CHUNK_ARCHIVE,
                FileKind.MANIFEST_ARCHIVE,
                FileKind.CATALOG,
                FileKind.CHUNK_ARCHIVE,
            ]
            for number in range(5):
                locate(d, number, 65536)
                reader = TapeFileReader(d, 65536)
                reader.drain()
                assert reader.complete
            locate(d, 5, 65536)
            reader = TapeFileReader(d, 65536)
            with pytest.raises(TruncatedFile):
                for _ in reader.chunks():
                    pass
    # The index holds only what is on tape: the first session's files and chunks.
    assert [r.file_number for r in recorded] == [0, 1, 2, 3, 4]
    ctx = app.plugin_context("tape")
    assert ctx.volumes is not None
    settings = PoolSettings.from_options({"changer": "lib1", "drives": "lib1-d0"})
    reader = TapeReader(ctx, Library(ctx, "lib1"), pool_drives(ctx, settings))
    try:
        for cid in chunk_rows:
            loc = index.chunk_location(cid)
            assert loc is not None and loc.file == 2
            reader.read_blob(cid, loc.volume, loc.file, loc.offset)
    finally:
        reader.close()
    index.close()

    # The next backup works: the cut volume is closed for appending, the set goes on.
    again = app.run_job("home")
    assert again.state == "succeeded", again.error
    vols = {v.label: v for v in ctx.volumes.list(pool="tape1")}
    assert vols["TAP001L8"].state == "full" and "no closing filemark" in vols["TAP001L8"].note
    assert vols["TAP002L8"].state == "writable"
    assert vols["TAP002L8"].media_set == vols["TAP001L8"].media_set
    newest = app.recovery_points(job="home")[0]
    assert restored(app, newest.id, tmp_path / "out", source) == tree(source)
