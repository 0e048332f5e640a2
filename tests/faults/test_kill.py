"""``kill -9`` of a running ``tapir job run`` at seeded random moments, through the real
command on a real tree: no run is ever shown succeeded without its point, every listed
point restores byte for byte, the pool verifies, the job works again, and gc reclaims
what the killed runs left behind."""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .helpers import (
    Entry,
    Tapir,
    make_tree,
    mutate,
    pool_bytes,
    restored_root,
    snapshot,
    tree_differences,
)

#: Where a kill lands: a share of the measured duration of a whole backup, or an
#: event seen on the pool (a commit's journal, a new manifest).
EARLY, MID, COMMIT, SEGMENT, MANIFEST = "early", "mid", "commit", "segment", "manifest"
MODES = (EARLY, MID, COMMIT, SEGMENT, MANIFEST)


@dataclass
class Loop:
    """The state a kill loop keeps between rounds."""

    tapir: Tapir
    src: Path
    pool: Path
    work: Path
    files: list[Path]
    #: The source as each run saw it (a run's point must restore to exactly this).
    expected: dict[int, dict[str, Entry]] = field(default_factory=dict)
    restored: set[str] = field(default_factory=set)  # points already restored and compared
    run_ids: set[int] = field(default_factory=set)
    killed: dict[str, int] = field(default_factory=dict)  # kills delivered per mode
    reclaimed: int = 0  # pack bytes gc freed over the loop
    orphans_reclaimed: int = 0  # rounds whose killed run left committed, unreferenced chunks
    late_kills: int = 0  # kills after a commit began (only these may leave a manifest)

    def new_runs(self) -> list[dict]:
        """Backup runs not seen before (restores are runs too, and are skipped)."""
        runs = [r for r in self.tapir.json("runs", "--limit", "500") if r["id"] not in self.run_ids]
        self.run_ids.update(r["id"] for r in runs)
        return [r for r in runs if r["kind"] == "backup"]


def _watch_and_kill(
    proc: subprocess.Popen[bytes], pool: Path, mode: str, delay: float, rnd: random.Random
) -> bool:
    """SIGKILL ``proc`` at the moment ``mode`` describes; False when it ended first."""
    manifests, index = pool / "manifests", pool / "index"
    before, segments = _names(manifests), _names(index)
    start = time.monotonic()
    try:
        while proc.poll() is None:
            # A backup of a few hundred MiB that runs this long hangs (or waits on a lock).
            assert time.monotonic() - start < 120, f"no {mode} event in 120 s"
            if mode in (EARLY, MID):
                if time.monotonic() - start >= delay:
                    break
            elif mode == COMMIT:
                if any((pool / "tmp").glob("*/journal.json")):
                    # Inside the commit: packs being moved, the segment, the manifest.
                    time.sleep(rnd.uniform(0, 0.03))
                    break
            elif mode == SEGMENT:
                if _names(index) - segments:
                    break  # the commit point: chunks are in, the manifest is not yet
                continue  # the window to the manifest is short: poll without sleeping
            elif _names(manifests) - before:
                break  # the manifest is on the medium; the catalog row may not be yet
            time.sleep(0.0005)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return proc.returncode == -signal.SIGKILL


def _restore_and_compare(loop: Loop, point: dict) -> None:
    target = loop.work / f"restore-{point['id'][:12]}"
    loop.tapir("restore", point["id"], "--to", str(target))
    got = snapshot(restored_root(target, loop.src))
    problems = tree_differences(loop.expected[point["run_id"]], got)
    assert not problems, f"point {point['id']} of run {point['run_id']}: {problems[:10]}"
    shutil.rmtree(target)
    loop.restored.add(point["id"])


def _check_after_kill(
    loop: Loop, state: dict[str, Entry], killed: bool, returncode: int | None
) -> None:
    # The first command after the kill opens the catalog: crash recovery runs there.
    runs = []
    for run in loop.new_runs():
        if run["id"] in loop.expected:  # the previous round's successful run
            assert run["state"] == "succeeded", run
        else:
            runs.append(run)
            loop.expected[run["id"]] = state  # a point of this run holds the tree as it was
    points = loop.tapir.json("backups")
    by_run = {p["run_id"]: p for p in points}
    assert len(runs) <= 1, runs
    for run in runs:
        if killed:
            if run["state"] == "failed":
                assert run["error"].startswith("worker died"), run
            else:
                # Killed after it finished its row: then the point is there and whole.
                assert run["state"] == "succeeded", run
                assert run["id"] in by_run, f"run {run['id']} succeeded without a point"
        else:
            assert returncode == 0 and run["state"] == "succeeded", run
            assert run["id"] in by_run
    if not killed:
        assert runs, "a run that ran to its end left no run row"
    for point in points:
        assert point["run_id"] in loop.expected, f"point {point['id']} of an unknown run"
        if point["id"] not in loop.restored:
            _restore_and_compare(loop, point)
    verify = loop.tapir.json("verify", "vault")
    assert verify["ok"], verify["problems"]
    assert verify["manifests_checked"] >= len(points)


def _successful_run_then_gc(
    loop: Loop, round_no: int, changed: list[Path], *, orphans: bool, last: bool
) -> None:
    # The files the killed run read get new data again, so what it committed
    # (unless it became a point) is needed by no one: gc must reclaim it.
    mutate(changed, 7919 * (round_no + 1), len(changed))
    state = snapshot(loop.src)
    out = loop.tapir("job", "run", "home").stdout
    match = re.match(r"run (\d+) succeeded: ", out)
    assert match, out
    loop.expected[int(match[1])] = state  # its point is restored by the next check

    before = pool_bytes(loop.pool)
    report = loop.tapir.json("gc", "vault")
    after = pool_bytes(loop.pool)
    assert after <= before, (before, after, report)
    if orphans:
        # Killed after its commit point, before its manifest: its chunks are dead.
        assert report["chunks_unreferenced"] > 0, report
        loop.orphans_reclaimed += 1
    if report["chunks_unreferenced"]:
        assert after < before, report
    loop.reclaimed += before - after
    verify = loop.tapir.json("verify", "vault")
    assert verify["ok"], verify["problems"]
    if last:
        again = loop.tapir.json("gc", "vault", "--dry-run")
        assert again["chunks_unreferenced"] == 0, again


def _kill_loop(tapir: Tapir, tmp_path: Path, seed: int, modes: list[str]) -> Loop:
    src = tmp_path / "src"
    files = make_tree(
        src, seed, files=300, min_size=64 << 10, max_size=768 << 10, large=(24 << 20, 24 << 20)
    )
    pool = tmp_path / "pool"
    tapir("pool", "create", "vault", "--path", str(pool), "--encrypt")
    tapir("job", "create", "home", "--plugin", "files", "--pool", "vault", "--path", str(src))
    work = tmp_path / "work"
    work.mkdir()
    loop = Loop(tapir, src, pool, work, files)

    # A first whole backup: a parent for the killed runs, and the time a backup takes.
    state = snapshot(src)
    started = time.monotonic()
    out = tapir("job", "run", "home", "--level", "full").stdout
    span = time.monotonic() - started
    match = re.match(r"run (\d+) succeeded: ", out)
    assert match, out
    loop.expected[int(match[1])] = state

    rnd = random.Random(seed)
    for round_no, mode in enumerate(modes):
        changed = mutate(files, seed * 100_003 + round_no, 6)
        state = snapshot(src)
        # A backup of mostly known data takes about half as long as the first one.
        delay = {EARLY: rnd.uniform(0, 0.3), MID: rnd.uniform(0.3, 0.6)}.get(mode, 0) * span
        manifests = _names(pool / "manifests")
        segments = _names(pool / "index")
        proc = tapir.start("job", "run", "home", "--level", "full")
        killed = _watch_and_kill(proc, pool, mode, delay, rnd)
        if killed:
            loop.killed[mode] = loop.killed.get(mode, 0) + 1
            loop.late_kills += mode in (COMMIT, SEGMENT, MANIFEST)
        # Read before the next command's clean-up: did its commit point pass, its manifest not?
        orphans = (
            killed
            and bool(_names(pool / "index") - segments)
            and not (_names(pool / "manifests") - manifests)
        )
        _check_after_kill(loop, state, killed, proc.returncode)
        _successful_run_then_gc(
            loop, round_no, changed, orphans=orphans, last=round_no == len(modes) - 1
        )
    # The last successful run's point is restored and compared too.
    for point in loop.tapir.json("backups"):
        if point["id"] not in loop.restored:
            _restore_and_compare(loop, point)
    # A run killed between its manifest and its catalog row leaves a whole point the
    # catalog does not list (verify checked it; `tapir pool rescan` adopts it).
    unlisted = _names(pool / "manifests") - {p["id"] for p in loop.tapir.json("backups")}
    assert len(unlisted) <= loop.late_kills, unlisted
    return loop


def _names(folder: Path) -> set[str]:
    """Final names in a pool folder (a ``.tmp-`` file is an atomic write in progress)."""
    return {n for n in os.listdir(folder) if not n.startswith(".tmp-")}


def test_kill_at_four_points_of_a_backup(tapir: Tapir, tmp_path: Path) -> None:
    loop = _kill_loop(tapir, tmp_path, seed=11, modes=[EARLY, MID, SEGMENT, MANIFEST])
    # The data is big enough that every kill landed while the backup still ran, and
    # the kill at the commit point left chunks that gc reclaimed.
    assert sum(loop.killed.values()) == 4, loop.killed
    assert loop.orphans_reclaimed >= 1 and loop.reclaimed > 0, loop


@pytest.mark.slow
def test_kill_many_times(tapir: Tapir, tmp_path: Path) -> None:
    rnd = random.Random(2024)
    modes = [rnd.choice(MODES) for _ in range(25)]
    loop = _kill_loop(tapir, tmp_path, seed=2024, modes=modes)
    assert sum(loop.killed.values()) >= 20, loop.killed
    assert loop.orphans_reclaimed >= 1, loop
