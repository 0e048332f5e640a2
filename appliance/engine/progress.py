"""Progress of a long operation: counters, a smoothed rate, an ETA, throttled updates.

Plugins call :meth:`RunProgress.advance` many thousand times a second; the catalog
is written at most about once a second and a listener (the CLI's progress bar, the
web panel) is called at most a few times a second.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class ProgressSnapshot:
    """What a progress listener receives, several times a second at most."""

    run_id: int | None
    phase: str  # "backup", "restore", "verify"...
    bytes_done: int
    bytes_total: int | None
    items_done: int
    items_total: int | None
    current: str | None
    elapsed: float  # seconds
    rate: float  # bytes per second, smoothed

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate, when the total is known."""
        if not self.bytes_total or self.rate <= 0:
            return None
        return max(0.0, (self.bytes_total - self.bytes_done) / self.rate)


ProgressListener = Callable[[ProgressSnapshot], None]

#: Seconds between catalog updates.
PERSIST_INTERVAL = 1.0
#: Seconds between listener calls.
LISTENER_INTERVAL = 0.2
#: Time constant of the rate's exponential smoothing, in seconds.
RATE_SMOOTHING = 5.0


class RunProgress:
    """A :class:`~tapir.appliance.plugin_api.ProgressReporter` for one run.

    ``persist`` receives a snapshot about once a second (the engine writes it to the
    run row); ``listener`` a few times a second. ``check_canceled`` is called on
    every :meth:`advance`, so a canceled run stops at the plugin's next progress call.
    ``offset_*`` let several assets of one run add up to run totals.
    """

    def __init__(
        self,
        run_id: int | None = None,
        phase: str = "backup",
        *,
        listener: ProgressListener | None = None,
        persist: Callable[[ProgressSnapshot], None] | None = None,
        check_canceled: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.run_id = run_id
        self.phase = phase
        self._listener = listener
        self._persist = persist
        self._check_canceled = check_canceled
        self._clock = clock
        self._lock = threading.Lock()
        self._start = clock()
        self.bytes_done = 0
        self.items_done = 0
        self.bytes_total: int | None = None
        self.items_total: int | None = None
        self.current: str | None = None
        self.rate = 0.0
        self._rate_at = self._start
        self._rate_bytes = 0
        self._persisted_at = float("-inf")
        self._notified_at = float("-inf")

    def set_total(self, bytes_total: int | None = None, items_total: int | None = None) -> None:
        """Announce what is expected (None keeps it unknown)."""
        with self._lock:
            self.bytes_total = bytes_total
            self.items_total = items_total
        self._emit(force=False)

    def advance(self, bytes_done: int = 0, items_done: int = 0, current: str | None = None) -> None:
        """Add to the counters; raises RunCanceled once the run is canceled."""
        if self._check_canceled is not None:
            self._check_canceled()
        with self._lock:
            self.bytes_done += bytes_done
            self.items_done += items_done
            if current is not None:
                self.current = current
        self._emit(force=False)

    def snapshot(self) -> ProgressSnapshot:
        """The current state, with the rate brought up to date."""
        with self._lock:
            now = self._clock()
            self._update_rate(now)
            return ProgressSnapshot(
                run_id=self.run_id,
                phase=self.phase,
                bytes_done=self.bytes_done,
                bytes_total=self.bytes_total,
                items_done=self.items_done,
                items_total=self.items_total,
                current=self.current,
                elapsed=now - self._start,
                rate=self.rate,
            )

    def flush(self) -> ProgressSnapshot:
        """Send the final state to the catalog and the listener, whatever the throttle."""
        snap = self._emit(force=True)
        assert snap is not None
        return snap

    def _update_rate(self, now: float) -> None:
        dt = now - self._rate_at
        if dt < 0.05:
            return
        instant = (self.bytes_done - self._rate_bytes) / dt
        if self._rate_bytes == 0 and self.rate == 0.0:
            # The first sample sets the rate outright; smoothing from zero would lag.
            self.rate = instant
        else:
            # Exponential smoothing that weighs samples by their duration, so the rate
            # does not depend on how often advance() is called.
            alpha = min(1.0, dt / RATE_SMOOTHING)
            self.rate += alpha * (instant - self.rate)
        self._rate_at = now
        self._rate_bytes = self.bytes_done

    def _emit(self, force: bool) -> ProgressSnapshot | None:
        now = self._clock()
        want_persist = self._persist is not None and (
            force or now - self._persisted_at >= PERSIST_INTERVAL
        )
        want_notify = self._listener is not None and (
            force or now - self._notified_at >= LISTENER_INTERVAL
        )
        if not (want_persist or want_notify or force):
            return None
        snap = self.snapshot()
        if want_persist:
            self._persisted_at = now
            assert self._persist is not None
            self._persist(snap)
        if want_notify:
            self._notified_at = now
            assert self._listener is not None
            self._listener(snap)
        return snap
