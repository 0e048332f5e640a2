"""The measuring runner reports real memory peaks and fails loudly on a bad exit."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest
from measure import CommandFailed, run_measured

MiB = 2**20


def _hold(mib: int, seconds: float = 0.4) -> str:
    touch = "x[::4096] = b'1' * len(x[::4096])"  # write every page so it is resident
    return f"import time; x = bytearray({mib} << 20); {touch}; time.sleep({seconds})"


def test_single_process_peak_is_its_own_not_the_harness(tmp_path: Path) -> None:
    small = run_measured(["true"], log_path=tmp_path / "log")
    # The harness (this pytest process) is far larger than `true`; it must not leak in.
    assert small.peak_rss < 16 * MiB
    big = run_measured([sys.executable, "-c", _hold(150)], log_path=tmp_path / "log")
    assert 150 * MiB <= big.peak_rss < 260 * MiB
    assert big.wall_seconds >= 0.4


def test_pipeline_peak_adds_up_concurrent_processes(tmp_path: Path) -> None:
    one = shlex.join([sys.executable, "-c", _hold(100, 0.8)])
    both = f"{one} & {one}; wait"
    m = run_measured(["bash", "-c", both], log_path=tmp_path / "log")
    assert 100 * MiB <= m.max_single_rss < 180 * MiB
    assert m.tree_peak_rss >= 200 * MiB
    assert m.peak_rss == m.tree_peak_rss
    assert m.wall_seconds >= 0.8


def test_failure_raises_with_the_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "log"
    with pytest.raises(CommandFailed, match="exit code 3") as caught:
        run_measured(["bash", "-c", "echo something broke >&2; exit 3"], log_path=log)
    assert "something broke" in str(caught.value)
    unchecked = run_measured(["bash", "-c", "exit 4"], log_path=log, check=False)
    assert unchecked.returncode == 4
