"""Watching a run while it executes: heartbeat, cancellation, progress and log lines.

A background thread refreshes the run's heartbeat every few seconds even while a
plugin blocks on slow I/O, so crash recovery can tell a slow worker from a dead
one. The same thread notices a cancel request made from another process; one made
in this process is seen at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..catalog.database import Catalog
from ..plugin_api.errors import RunCanceled
from . import runs
from .progress import ProgressListener, ProgressSnapshot, RunProgress

log = logging.getLogger(__name__)

# Run ids being executed in this process, with their cancel flags.
_ACTIVE: dict[int, threading.Event] = {}
_ACTIVE_LOCK = threading.Lock()


def cancel_locally(run_id: int) -> bool:
    """Set the cancel flag of a run executing in this process; False if it is not here."""
    with _ACTIVE_LOCK:
        event = _ACTIVE.get(run_id)
    if event is None:
        return False
    event.set()
    return True


class RunLogHandler(logging.Handler):
    """Copies a plugin's log records (INFO and up) into the run's log in the catalog."""

    def __init__(self, catalog: Catalog, run_id: int) -> None:
        super().__init__(logging.INFO)
        self.catalog = catalog
        self.run_id = run_id

    def emit(self, record: logging.LogRecord) -> None:
        try:
            runs.log_line(self.catalog, self.run_id, record.getMessage(), record.levelname)
        except Exception:  # logging must never fail the run
            self.handleError(record)


class RunMonitor:
    """Heartbeat, cancellation and progress of one running run; use as a context manager."""

    def __init__(
        self,
        catalog: Catalog,
        run_id: int,
        worker: str,
        *,
        phase: str = "backup",
        listener: ProgressListener | None = None,
        interval: float = runs.HEARTBEAT_INTERVAL,
    ) -> None:
        self.catalog = catalog
        self.run_id = run_id
        self.worker = worker
        self.interval = interval
        self.canceled = threading.Event()
        self.lost = False  # crash recovery or an operator took the run away
        # Bytes read from sources: finished assets, plus the writer at work now.
        self.bytes_read_done = 0
        self.current_writer: Any = None
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"tapir-heartbeat-{run_id}", daemon=True
        )
        self.progress = RunProgress(
            run_id,
            phase,
            listener=listener,
            persist=self._persist,
            check_canceled=self.check_canceled,
        )

    def __enter__(self) -> RunMonitor:
        with _ACTIVE_LOCK:
            _ACTIVE[self.run_id] = self.canceled
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        with _ACTIVE_LOCK:
            _ACTIVE.pop(self.run_id, None)

    def check_canceled(self) -> None:
        """Raise RunCanceled once the run was canceled (or taken away from this worker)."""
        if self.canceled.is_set():
            if self.lost:
                raise RunCanceled(f"run {self.run_id} is no longer held by this worker")
            raise RunCanceled(f"run {self.run_id} was canceled")

    def counters(self, snap: ProgressSnapshot | None = None) -> dict[str, Any]:
        """The run row's progress columns."""
        snap = snap or self.progress.snapshot()
        return {
            "bytes_done": snap.bytes_done,
            "bytes_read": self.bytes_read(),
            "bytes_total": snap.bytes_total,
            "items_done": snap.items_done,
            "current": snap.current,
        }

    def bytes_read(self) -> int:
        """Bytes actually read from the sources (unchanged files and holes are not)."""
        writer = self.current_writer
        return self.bytes_read_done + (getattr(writer, "bytes_read", 0) if writer else 0)

    @contextmanager
    def writing(self, writer: Any) -> Iterator[Any]:
        """Attach a recovery point writer for the block: its bytes read count in the run,
        and it is aborted (nothing of it becomes visible) when the block raises."""
        self.current_writer = writer
        try:
            yield writer
        except BaseException:
            try:
                writer.abort()
            except Exception as exc:
                log.warning("run %s: aborting the writer failed too: %s", self.run_id, exc)
            raise
        finally:
            self.bytes_read_done += getattr(writer, "bytes_read", 0)
            self.current_writer = None

    def _persist(self, snap: ProgressSnapshot) -> None:
        self._heartbeat(snap)

    def _heartbeat(self, snap: ProgressSnapshot | None = None) -> None:
        try:
            result = runs.heartbeat(self.catalog, self.run_id, self.worker, **self.counters(snap))
        except Exception as exc:  # a busy catalog must not kill the backup
            log.warning("run %s: heartbeat failed: %s", self.run_id, exc)
            return
        if not result.still_running:
            self.lost = True
            self.canceled.set()
        elif result.cancel_requested:
            self.canceled.set()

    def _beat(self) -> None:
        while not self._stop.wait(min(self.interval, 1.0)):
            # Cancel requests are polled every second; the heartbeat itself is cheap.
            self._heartbeat()
