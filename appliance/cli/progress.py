"""A live progress display fed by the facade's :class:`ProgressSnapshot` callbacks.

On a terminal it is a rich progress bar (bytes done/total, rate, ETA, current item).
Elsewhere (a pipe, a log file, cron) it prints one plain line every few seconds,
because a redrawn bar would fill a log with control sequences.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import IO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from ..engine.service import ProgressSnapshot
from .output import format_bytes, format_duration, format_rate


def snapshot_line(snap: ProgressSnapshot) -> str:
    """One plain line describing a snapshot: what a log file receives."""
    done = format_bytes(snap.bytes_done)
    if snap.bytes_total:
        pct = 100.0 * snap.bytes_done / snap.bytes_total
        amount = f"{done} / {format_bytes(snap.bytes_total)} ({pct:.0f}%)"
    else:
        amount = done
    items = f"{snap.items_done}" + (f"/{snap.items_total}" if snap.items_total else "")
    line = (
        f"{snap.phase}: {amount}, {items} items, {format_rate(snap.rate)}, "
        f"elapsed {format_duration(snap.elapsed)}, ETA {format_duration(snap.eta)}"
    )
    if snap.current:
        line += f", {snap.current}"
    return line


class ProgressDisplay:
    """A context manager whose instance is a ``ProgressListener``.

    Use as ``with ProgressDisplay(console) as show: appliance.run_job(..., progress=show)``.
    ``interval`` is the seconds between plain lines when the console is not a terminal.
    """

    def __init__(self, console: Console, *, interval: float = 10.0, label: str = "") -> None:
        self.console = console
        self.interval = interval
        self.label = label
        self.last: ProgressSnapshot | None = None
        self._lock = threading.Lock()
        self._last_line = 0.0
        self._last_printed: ProgressSnapshot | None = None
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    @property
    def live(self) -> bool:
        """True when the display redraws a bar (a terminal), False for plain lines."""
        return self.console.is_terminal

    def __enter__(self) -> ProgressDisplay:
        if self.live:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[amount]}"),
                TextColumn("{task.fields[rate]}"),
                TextColumn("ETA {task.fields[eta]}"),
                TextColumn("{task.fields[current]}", style="dim"),
                console=self.console,
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(
                self.label or "starting", total=None, amount="", rate="", eta="-", current=""
            )
        return self

    def __call__(self, snap: ProgressSnapshot) -> None:
        with self._lock:
            self.last = snap
            if self._progress is not None and self._task is not None:
                self._progress.update(
                    self._task,
                    description=self.label or snap.phase,
                    completed=snap.bytes_done,
                    total=snap.bytes_total,
                    amount=_amount(snap),
                    rate=format_rate(snap.rate),
                    eta=format_duration(snap.eta),
                    current=_shorten(snap.current or "", 50),
                )
                return
            now = time.monotonic()
            if now - self._last_line >= self.interval:
                self._last_line = now
                self._last_printed = snap
                self._write(snapshot_line(snap))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with self._lock:
            if self._progress is not None:
                self._progress.stop()
                self._progress = None
            elif self.last is not None and self.last is not self._last_printed:
                # The last periodic line may be seconds old: end the log with the totals.
                self._write(snapshot_line(self.last))

    def _write(self, line: str) -> None:
        out: IO[str] = self.console.file
        out.write(line + "\n")
        out.flush()


def _amount(snap: ProgressSnapshot) -> str:
    if snap.bytes_total:
        return f"{format_bytes(snap.bytes_done)}/{format_bytes(snap.bytes_total)}"
    return format_bytes(snap.bytes_done)


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1) :]
