"""``tapir serve``'s process: the web panel, the scheduler and N workers, stopped together.

Shutdown (SIGTERM or SIGINT): the panel stops accepting requests, the scheduler
stops queuing, and every run a worker of this process is executing is *canceled*:
the engine stops it at its next item and marks it 'canceled' (nothing partial is
committed: a recovery point exists only once whole). If a run has not stopped
within ``stop_timeout`` seconds, the process exits anyway and the run is left to
crash recovery, which marks it failed once its worker is seen dead.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from sqlalchemy import select

from ..catalog.models import Run, RunState
from ..engine.service import Appliance
from ..engine.worker import WorkerPool

log = logging.getLogger(__name__)


class _StopServing(SystemExit):
    """Raised in the main thread by the signal handler to end the web server's loop.

    waitress ends its loop cleanly on SystemExit, so this is how a signal reaches it.
    """


@dataclass
class ServeOptions:
    """What ``tapir serve`` runs and how."""

    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 2
    web: bool = True
    scheduler: bool = True
    tick_seconds: float = 5.0
    poll_seconds: float = 2.0
    stop_timeout: float = 60.0
    web_threads: int = 8


class ServeProcess:
    """Runs the parts of the appliance that ``options`` asks for until stopped.

    The scheduler and the workers are the engine's :class:`WorkerPool`; this class
    adds the web panel, signal handling and the shutdown policy.
    """

    def __init__(
        self,
        appliance: Appliance,
        options: ServeOptions,
        say: Callable[[str], None] = print,
    ) -> None:
        self.appliance = appliance
        self.options = options
        self.say = say
        self.stopping = threading.Event()
        self.pool = WorkerPool(
            appliance,
            options.workers,
            scheduler=options.scheduler,
            poll_interval=options.poll_seconds,
            tick_interval=options.tick_seconds,
        )
        self._in_web_loop = False

    def busy_runs(self) -> list[int]:
        """Ids of the runs this process's workers are executing now."""
        names = [w.name for w in self.pool.workers]
        if not names:
            return []
        with self.appliance.catalog.session() as s:
            rows = s.scalars(
                select(Run.id).where(Run.state == RunState.RUNNING, Run.worker.in_(names))
            )
            return sorted(rows)

    def request_stop(self) -> None:
        """Ask every part to stop; runs executing here are canceled."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        self.pool.stop(timeout=0)  # only raises the flag; join() waits with a deadline
        for run_id in self.busy_runs():
            try:
                self.appliance.cancel_run(run_id)
                self.say(f"canceling run {run_id}")
            except Exception:
                log.exception("could not cancel run %s", run_id)

    def join(self) -> list[int]:
        """Wait up to ``stop_timeout`` for the threads; returns runs still executing."""
        deadline = time.monotonic() + self.options.stop_timeout
        for thread in self.pool.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return self.busy_runs()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.say(f"received {signal.Signals(signum).name}, stopping")
        self.request_stop()
        if self._in_web_loop:
            raise _StopServing(0)

    def run(self) -> int:
        """Run until SIGTERM or SIGINT; returns the process exit code."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        parts = []
        if self.options.scheduler:
            parts.append("scheduler")
        if self.options.workers:
            parts.append(f"{self.options.workers} worker(s)")
        self.pool.start()
        try:
            if self.options.web:
                self._serve_web(parts)
            else:
                self.say(f"running {', '.join(parts)}")
                while not self.stopping.wait(1.0):
                    pass
        except _StopServing:
            pass
        finally:
            self.request_stop()
        for run_id in self.join():
            self.say(
                f"run {run_id} did not stop within {self.options.stop_timeout:.0f}s; "
                "leaving it to crash recovery"
            )
        self.say("stopped")
        return 0

    def _serve_web(self, parts: list[str]) -> None:
        from waitress import create_server

        from ..web.app import create_app

        app = create_app(self.appliance)
        server = create_server(
            app,
            host=self.options.host,
            port=self.options.port,
            threads=self.options.web_threads,
            ident="tapir",
        )
        port = getattr(server, "effective_port", self.options.port)
        parts.insert(0, f"web panel on http://{self.options.host}:{port}/")
        self.say(f"running {', '.join(parts)}")
        self._in_web_loop = True
        try:
            if not self.stopping.is_set():
                server.run()
        finally:
            self._in_web_loop = False
            server.close()
