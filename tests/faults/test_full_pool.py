"""A pool whose file system fills up during a backup (a real 32 MiB tmpfs), through the
real command: the run fails saying so, leaves no point and no stray files, earlier
points stay whole, and once the data fits again the next backup succeeds."""

from __future__ import annotations

import os
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from .helpers import Tapir, make_tree, restored_root, snapshot, tree_differences, write_random

pytestmark = pytest.mark.root


def _free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _restores_to(tapir: Tapir, point: str, src: Path, expected: dict, target: Path) -> None:
    tapir("restore", point, "--to", str(target))
    assert tree_differences(expected, snapshot(restored_root(target, src))) == []
    shutil.rmtree(target)


def test_pool_file_system_full(tapir: Tapir, tmp_path: Path, tmpfs: Callable[[str], Path]) -> None:
    mount = tmpfs("32m")
    pool = mount / "pool"
    tapir("pool", "create", "small", "--path", str(pool))
    src = tmp_path / "src"
    make_tree(src, 3, files=24, min_size=32 << 10, max_size=256 << 10)
    tapir("job", "create", "docs", "--plugin", "files", "--pool", "small", "--path", str(src))
    tapir("job", "run", "docs")
    (first,) = tapir.json("backups")
    first_state = snapshot(src)
    free_before = _free(mount)

    # Incompressible data well beyond what is left on the pool's file system.
    rnd = random.Random(9)
    for n in range(3):
        write_random(src / "big" / f"big{n}.bin", rnd, 14 << 20)
    proc = tapir("job", "run", "docs", check=False)
    assert proc.returncode == 1, proc
    match = re.search(r"run (\d+) failed", proc.stdout + proc.stderr)
    assert match, proc
    run = tapir.json("run", "show", match[1], "--log")
    assert run["state"] == "failed", run
    for text in (run["error"], "\n".join(line["message"] for line in run["log"])):
        assert "full" in text and str(pool) in text, text
    # No point, and no half-written pack kept taking the space.
    assert [p["id"] for p in tapir.json("backups")] == [first["id"]]
    assert _free(mount) >= free_before - (1 << 20), (_free(mount), free_before)
    assert list((pool / "tmp").iterdir()) == []

    assert tapir.json("verify", "small")["ok"]
    _restores_to(tapir, first["id"], src, first_state, tmp_path / "r1")

    # Make the data fit again: the next backup succeeds and restores.
    shutil.rmtree(src / "big")
    write_random(src / "fits.bin", rnd, 4 << 20)
    tapir("gc", "small")
    assert " succeeded: " in tapir("job", "run", "docs").stdout
    points = tapir.json("backups")
    assert len(points) == 2
    assert tapir.json("verify", "small")["ok"]
    _restores_to(tapir, "docs:latest", src, snapshot(src), tmp_path / "r2")
