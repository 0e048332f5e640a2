"""``tapir serve``: the web panel, the scheduler and workers in one process.

systemd runs the parts apart with --no-web, --no-scheduler and --workers 0 (see
docs/user-guide/serve.md and image/systemd/).
"""

from __future__ import annotations

import logging

import click

from .daemon import ServeOptions, ServeProcess
from .state import CliState, pass_state


def _say(line: str) -> None:
    click.echo(line)


def _service_logging() -> None:
    # A service's log goes to the journal: keep times, INFO lines and full tracebacks.
    root = logging.getLogger()
    for handler in root.handlers:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.setLevel(min(root.level, logging.INFO) if root.level else logging.INFO)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the panel binds.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="Panel port (0: any free port, printed at start).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="Worker threads executing queued runs (0: none).",
)
@click.option("--web/--no-web", default=True, help="Run the web panel.")
@click.option(
    "--scheduler/--no-scheduler",
    default=True,
    help="Run the scheduler (job schedules and endpoint discovery).",
)
@click.option(
    "--stop-timeout",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Seconds to wait for canceled runs to stop on shutdown.",
)
@click.option("--tick-seconds", type=click.FloatRange(min=0.1), default=5.0, hidden=True)
@click.option("--poll-seconds", type=click.FloatRange(min=0.1), default=2.0, hidden=True)
@pass_state
def serve(
    state: CliState,
    host: str,
    port: int,
    workers: int,
    web: bool,
    scheduler: bool,
    stop_timeout: float,
    tick_seconds: float,
    poll_seconds: float,
) -> None:
    """Run the web panel, the scheduler and workers until SIGTERM or Ctrl-C.

    Runs still executing at shutdown are canceled at their next item.
    """
    if not (web or scheduler or workers):
        raise click.UsageError("nothing to run: --no-web, --no-scheduler and --workers 0")
    options = ServeOptions(
        host=host,
        port=port,
        workers=workers,
        web=web,
        scheduler=scheduler,
        tick_seconds=tick_seconds,
        poll_seconds=poll_seconds,
        stop_timeout=stop_timeout,
    )
    _service_logging()
    process = ServeProcess(state.appliance(), options, say=_say)
    raise click.exceptions.Exit(process.run())
