"""Run one external command and measure its wall time and peak memory.

Peak memory is reported two ways because neither alone is correct for a tree:

* ``tree_peak_rss``: the sum of the RSS of the process and all its descendants,
  polled every ``POLL_SECONDS`` with psutil. It sees pipelines and helper
  processes, but can miss a spike shorter than the poll interval.
* ``max_single_rss``: the kernel's ``ru_maxrss`` for the command, read by GNU
  ``/usr/bin/time -f %M``: the largest RSS any single process of the tree ever
  reached (the kernel folds in waited-for descendants). It never misses a
  spike, but it does not add up concurrent processes.

The command runs under ``/usr/bin/time`` rather than straight from Python
because Linux carries a process's RSS high-water mark across ``exec``: a child
spawned by this (large) Python process would report Python's RSS as its own.
``time`` is small, forks, and reads its child's ``wait4`` usage. The polled tree
sum likewise counts only ``time``'s descendants.

``peak_rss`` is the larger of the two: a lower bound of the true tree peak that
is exact for single-process tools.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

POLL_SECONDS = 0.05
GNU_TIME = "/usr/bin/time"


class CommandFailed(RuntimeError):
    """A benchmarked command exited non-zero; the message carries its log tail."""


@dataclass
class Measurement:
    """Wall time and memory of one command."""

    argv: list[str]
    wall_seconds: float
    tree_peak_rss: int
    max_single_rss: int
    returncode: int

    @property
    def peak_rss(self) -> int:
        """Best available peak RSS of the process tree, in bytes."""
        return max(self.tree_peak_rss, self.max_single_rss)


@dataclass
class StepMeasurement:
    """All commands of one benchmark step (e.g. one tool's first backup)."""

    commands: list[Measurement] = field(default_factory=list)

    @property
    def peak_rss(self) -> int:
        """Largest peak RSS of any command in the step (they run one after another)."""
        return max((m.peak_rss for m in self.commands), default=0)


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    try:
        members = proc.children(recursive=True)
    except psutil.Error:
        return 0
    for member in members:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            # A member exiting between listing and reading is expected churn.
            continue
    return total


def _poll_tree(pid: int, stop: threading.Event, peak: list[int]) -> None:
    try:
        proc = psutil.Process(pid)
    except psutil.Error:
        return
    while not stop.is_set():
        peak[0] = max(peak[0], _tree_rss(proc))
        stop.wait(POLL_SECONDS)


def _parse_time_output(text: str) -> int:
    # time prefixes "Command exited with non-zero status N" on failure; %M is the last line.
    lines = text.strip().splitlines()
    try:
        return int(lines[-1])
    except (IndexError, ValueError):
        return 0


def _tail(path: Path, limit: int = 3000) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return "(no log)"
    return data[-limit:].decode("utf-8", "replace")


def run_measured(
    argv: Sequence[str],
    *,
    log_path: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> Measurement:
    """Run ``argv`` to completion, appending its stdout and stderr to ``log_path``.

    Raises :class:`CommandFailed` (with the end of the log) on a non-zero exit
    when ``check`` is true.
    """
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"\n$ {' '.join(argv)}\n".encode())
        log.flush()
        with tempfile.NamedTemporaryFile("r", prefix="maxrss-") as rss_file:
            wrapped = [GNU_TIME, "-f", "%M", "-o", rss_file.name, *argv]
            start = time.perf_counter()
            proc = subprocess.Popen(
                wrapped, cwd=cwd, env=full_env, stdout=log, stderr=subprocess.STDOUT
            )
            stop = threading.Event()
            peak = [0]
            poller = threading.Thread(target=_poll_tree, args=(proc.pid, stop, peak), daemon=True)
            poller.start()
            returncode = proc.wait()
            wall = time.perf_counter() - start
            stop.set()
            poller.join()
            max_rss_kib = _parse_time_output(rss_file.read())
    measurement = Measurement(
        argv=list(argv),
        wall_seconds=wall,
        tree_peak_rss=peak[0],
        max_single_rss=max_rss_kib * 1024,
        returncode=returncode,
    )
    if check and proc.returncode != 0:
        raise CommandFailed(
            f"command failed with exit code {proc.returncode}: {' '.join(argv)}\n"
            f"--- end of {log_path} ---\n{_tail(log_path)}"
        )
    return measurement
