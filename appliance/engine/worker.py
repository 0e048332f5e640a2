"""Worker threads: claim a queued run, execute it, repeat, until told to stop.

``tapir serve`` starts a :class:`WorkerPool` of N workers, one scheduler thread and
one discovery thread (endpoints due for discovery, see :mod:`.discovery`) on the
same :class:`~tapir.appliance.engine.service.Appliance`. Each worker also
runs crash recovery from time to time, so runs of a dead appliance sharing the
catalog are failed within a few minutes.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from . import runs
from .discovery import EndpointWatchers

if TYPE_CHECKING:
    from .service import Appliance

log = logging.getLogger(__name__)


class Worker:
    """One worker loop; :meth:`run` blocks until :meth:`stop` (between runs)."""

    def __init__(
        self,
        appliance: Appliance,
        name: str | None = None,
        *,
        poll_interval: float = 2.0,
        recover_interval: float = 60.0,
        stop_event: threading.Event | None = None,
    ) -> None:
        self.appliance = appliance
        self.name = name or runs.worker_name()
        self.poll_interval = poll_interval
        self.recover_interval = recover_interval
        self._stop = stop_event or threading.Event()
        self.executed: list[int] = []

    def stop(self) -> None:
        """Ask the loop to end after the current run."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stop.is_set()

    def run_once(self) -> int | None:
        """Claim and execute one run; its id, or None when the queue had nothing runnable."""
        run_id = self.appliance.claim_next_run(self.name)
        if run_id is None:
            return None
        self.appliance.execute_run(run_id, worker=self.name)
        self.executed.append(run_id)
        return run_id

    def run(self) -> None:
        """The loop: recover stale runs now and then, claim, execute, wait when idle."""
        next_recovery = 0.0
        while not self._stop.is_set():
            try:
                if time.monotonic() >= next_recovery:
                    self.appliance.recover_stale_runs()
                    next_recovery = time.monotonic() + self.recover_interval
                if self.run_once() is not None:
                    continue
            except Exception:
                # A broken catalog connection or a bug in one run must not end the worker.
                log.exception("worker %s: error in the worker loop", self.name)
            self._stop.wait(self.poll_interval)


class WorkerPool:
    """N worker threads and (optionally) the scheduler and discovery threads on one appliance.

    ``discovery`` defaults to ``scheduler``: the process that schedules jobs also
    discovers endpoints and watches the inventory events of plugins that have them.
    """

    def __init__(
        self,
        appliance: Appliance,
        workers: int = 2,
        *,
        scheduler: bool = True,
        poll_interval: float = 2.0,
        tick_interval: float = 20.0,
        discovery: bool | None = None,
    ) -> None:
        if workers < 0:
            raise ValueError("the number of workers cannot be negative")
        self.appliance = appliance
        self._stop = threading.Event()
        self.workers = [
            Worker(
                appliance,
                runs.worker_name(str(i + 1)),
                poll_interval=poll_interval,
                stop_event=self._stop,
            )
            for i in range(workers)
        ]
        self.tick_interval = tick_interval
        self.scheduler = scheduler
        # Scheduled discovery belongs to the scheduler unless asked for separately.
        self.discovery = scheduler if discovery is None else discovery
        self.watchers = EndpointWatchers(appliance.env, self._stop)
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start every thread (daemons: a hard exit does not wait for them)."""
        for w in self.workers:
            t = threading.Thread(target=w.run, name=f"tapir-worker-{w.name}", daemon=True)
            t.start()
            self.threads.append(t)
        if self.scheduler:
            t = threading.Thread(target=self._schedule, name="tapir-scheduler", daemon=True)
            t.start()
            self.threads.append(t)
        if self.scheduler:
            # A group run holds its members frozen and backs them all up: its own thread,
            # so that it never delays the cron tick.
            t = threading.Thread(target=self._groups, name="tapir-groups", daemon=True)
            t.start()
            self.threads.append(t)
        if self.discovery:
            # Apart from the cron thread: discovering a large vCenter takes a while.
            t = threading.Thread(target=self._discover, name="tapir-discovery", daemon=True)
            t.start()
            self.threads.append(t)

    def stop(self, timeout: float | None = None) -> None:
        """Stop taking runs and wait for the running ones to end (up to ``timeout``)."""
        self._stop.set()
        for t in self.threads:
            t.join(timeout)

    def _schedule(self) -> None:
        while not self._stop.is_set():
            try:
                self.appliance.tick_scheduler()
                self.appliance.record_pool_usage()  # at most one sample a pool an hour
            except Exception:
                log.exception("scheduler tick failed")
            self._stop.wait(self.tick_interval)

    def _groups(self) -> None:
        while not self._stop.is_set():
            try:
                self.appliance.run_due_groups()
            except Exception:
                log.exception("scheduled consistency group run failed")
            self._stop.wait(self.tick_interval)

    def _discover(self) -> None:
        while not self._stop.is_set():
            try:
                self.watchers.sync()
                self.appliance.run_due_discoveries(stop=self._stop)
            except Exception:
                log.exception("scheduled discovery failed")
            self._stop.wait(self.tick_interval)
