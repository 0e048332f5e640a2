"""``tapir runs`` and ``tapir run``: the run history, one run's details and log, cancel."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from ..engine.service import Appliance
from .output import (
    format_bytes,
    format_duration,
    format_time,
    print_fields,
    print_json,
    print_table,
    stdout_console,
)
from .records import run_duration, run_percent, run_record
from .state import CliState, pass_state


def _job_names(app: Appliance) -> dict[int, str]:
    return {j.id: j.name for j in app.jobs()}


def progress_text(record: dict, percent: float | None) -> str:
    """``45% 1.2 GiB`` style progress of a run record."""
    done = format_bytes(record["bytes_done"])
    return f"{percent:.0f}% {done}" if percent is not None else done


@click.command()
@click.option("--job", metavar="NAME", help="Only this job's runs.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def runs(state: CliState, job: str | None, limit: int, as_json: bool) -> None:
    """List recent runs, newest first."""
    app = state.appliance()
    rows = app.runs(limit=limit, job=job)
    names = _job_names(app)
    if as_json:
        print_json([run_record(r, names) for r in rows])
        return
    now = datetime.now(UTC)
    table = []
    for run in rows:
        rec = run_record(run, names)
        table.append(
            [
                rec["id"],
                rec["job"],
                rec["kind"],
                rec["level"],
                rec["state"],
                format_time(rec["queued_at"]),
                format_duration(run_duration(run, now)),
                progress_text(rec, run_percent(run)),
                format_bytes(rec["bytes_written"]),
            ]
        )
    print_table(
        ["id", "job", "kind", "level", "state", "queued", "duration", "progress", "written"],
        table,
        right=["id", "duration", "written"],
        empty="no runs",
    )


@click.group()
def run() -> None:
    """One run: show it, cancel it."""


@run.command("show")
@click.argument("run_id", metavar="ID", type=int)
@click.option("--log", "with_log", is_flag=True, help="Also print the run's log.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def run_show(state: CliState, run_id: int, with_log: bool, as_json: bool) -> None:
    """Show run ID: state, counters, error (and its log with --log)."""
    app = state.appliance()
    row = app.run(run_id)
    record = run_record(row, _job_names(app))
    log = app.run_log(run_id) if with_log else []
    if as_json:
        if with_log:
            record["log"] = [{"at": at, "level": lvl, "message": msg} for at, lvl, msg in log]
        print_json(record)
        return
    now = datetime.now(UTC)
    print_fields(
        {
            "run": record["id"],
            "job": record["job"],
            "kind": f"{record['kind']} ({record['level']})",
            "state": record["state"] + (" (cancel requested)" if row.cancel_requested else ""),
            "trigger": f"{record['trigger']}, attempt {record['attempt']}",
            "queued": format_time(record["queued_at"]),
            "started": format_time(record["started_at"]),
            "finished": format_time(record["finished_at"]),
            "duration": format_duration(run_duration(row, now)),
            "worker": record["worker"],
            "progress": progress_text(record, run_percent(row))
            + (f" of {format_bytes(record['bytes_total'])}" if record["bytes_total"] else ""),
            "read": format_bytes(record["bytes_read"]),
            "written": format_bytes(record["bytes_written"]),
            "items": record["items_done"],
            "current": record["current"],
            "error": record["error"],
        }
    )
    if with_log:
        console = stdout_console()
        console.print("log:")
        for at, level, message in log:
            console.print(f"  {format_time(at)} {level:<7} {message}", markup=False)


@run.command("cancel")
@click.argument("run_id", metavar="ID", type=int)
@pass_state
def run_cancel(state: CliState, run_id: int) -> None:
    """Cancel run ID: a queued run never starts; a running one stops at its next item."""
    state.appliance().cancel_run(run_id)
    click.echo(f"cancel requested for run {run_id}")
