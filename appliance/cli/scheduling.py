"""Scheduling commands: the appliance's time zone, job and pool limits, retries, and
notification targets (``tapir notify``).

``job set`` and ``pool limit`` join the ``job`` and ``pool`` groups; ``settings`` and
``notify`` are groups of their own.
"""

from __future__ import annotations

import re
import sys
from typing import Any

import click

from ..engine.notifications import EVENTS
from .jobs import job
from .output import format_time, print_json, print_table
from .pools import pool
from .state import CliState, pass_state

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """Seconds in ``300``, ``90s``, ``5m``, ``2h`` or ``1d``; ValueError otherwise."""
    match = _DURATION.match(text or "")
    if not match:
        raise ValueError(f"invalid duration {text!r} (e.g. 300, 5m, 2h, 1d)")
    return int(match.group(1)) * _UNIT[match.group(2)]


def _duration(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _read_secret(from_stdin: bool) -> str | None:
    if not from_stdin:
        return None
    secret = sys.stdin.readline().rstrip("\r\n")
    if not secret:
        raise click.UsageError("--secret-stdin given but stdin held no secret")
    return secret


# --- tapir settings -------------------------------------------------------------------


@click.group()
def settings() -> None:
    """Appliance-wide settings."""


@settings.command("timezone")
@click.argument("zone", required=False)
@pass_state
def settings_timezone(state: CliState, zone: str | None) -> None:
    """Show or set the time zone schedules are evaluated in (e.g. Europe/Berlin).

    Schedules created without --timezone follow it, also when it changes.
    """
    app = state.appliance()
    if zone is None:
        click.echo(app.timezone())
        return
    moved = app.set_timezone(zone)
    click.echo(f"time zone {zone.strip()}; {moved} schedule(s) moved to it")


# --- tapir job set / tapir pool limit -------------------------------------------------


@job.command("set")
@click.argument("name")
@click.option(
    "--max-concurrent", type=click.IntRange(min=0), help="Runs of this job at once (0: no limit)."
)
@click.option("--retries", type=click.IntRange(min=0), help="Retries of a failed run (0: none).")
@click.option(
    "--retry-delay", callback=_duration, metavar="DURATION", help="Back-off of retry 1 (5m)."
)
@click.option(
    "--retry-delay-max",
    callback=_duration,
    metavar="DURATION",
    help="Longest back-off; each retry waits twice the previous one up to this (4h).",
)
@pass_state
def job_set(
    state: CliState,
    name: str,
    max_concurrent: int | None,
    retries: int | None,
    retry_delay: int | None,
    retry_delay_max: int | None,
) -> None:
    """Change a job's concurrency limit and retry policy."""
    if all(v is None for v in (max_concurrent, retries, retry_delay, retry_delay_max)):
        raise click.UsageError("nothing to change: give --max-concurrent, --retries or a delay")
    j = state.appliance().set_job_limits(
        name,
        max_concurrent_runs=max_concurrent,
        max_retries=retries,
        retry_delay=retry_delay,
        retry_delay_max=retry_delay_max,
    )
    click.echo(
        f"job {j.name}: at most {j.max_concurrent_runs or 'unlimited'} run(s) at once, "
        f"{j.max_retries} retr{'y' if j.max_retries == 1 else 'ies'} "
        f"after {j.retry_delay}s doubling up to {j.retry_delay_max}s"
    )


@pool.command("limit")
@click.argument("name")
@click.argument("max_concurrent", type=click.IntRange(min=0))
@pass_state
def pool_limit(state: CliState, name: str, max_concurrent: int) -> None:
    """Let at most MAX_CONCURRENT runs write into pool NAME at once (0: no limit)."""
    state.appliance().set_pool_limit(name, max_concurrent)
    click.echo(f"pool {name}: {max_concurrent or 'unlimited'} concurrent run(s)")


# --- tapir notify ---------------------------------------------------------------------


@click.group()
def notify() -> None:
    """Notification targets: email and webhooks, for run outcomes and operator requests."""


_events_option = click.option(
    "--event",
    "events",
    multiple=True,
    type=click.Choice(EVENTS),
    help="Event to send (repeat) [default: failure and operator-request].",
)
_secret_option = click.option(
    "--secret-stdin", is_flag=True, help="Read the password or signing secret from stdin."
)


@notify.group("add")
def notify_add() -> None:
    """Add a target."""


@notify_add.command("email")
@click.argument("name")
@click.option("--host", required=True, help="SMTP server.")
@click.option("--port", type=click.IntRange(1, 65535), default=25, show_default=True)
@click.option("--starttls", is_flag=True, help="Upgrade the connection with STARTTLS.")
@click.option("--ca-file", help="CA certificates to trust instead of the system's.")
@click.option("--username", help="SMTP login (the password comes from --secret-stdin).")
@click.option("--sender", help="From address [default: tapir@HOSTNAME].")
@click.option("--to", "to", multiple=True, required=True, help="Recipient (repeat).")
@_events_option
@_secret_option
@pass_state
def notify_add_email(
    state: CliState,
    name: str,
    host: str,
    port: int,
    starttls: bool,
    ca_file: str | None,
    username: str | None,
    sender: str | None,
    to: tuple[str, ...],
    events: tuple[str, ...],
    secret_stdin: bool,
) -> None:
    """Send notifications as email through an SMTP server."""
    config: dict[str, Any] = {
        "host": host,
        "port": port,
        "starttls": starttls,
        "ca_file": ca_file,
        "username": username,
        "sender": sender,
        "to": list(to),
    }
    target = state.appliance().add_notification_target(
        name, "email", config, events=list(events), secret=_read_secret(secret_stdin)
    )
    click.echo(f"notification target {target.name} added ({', '.join(target.events)})")


@notify_add.command("webhook")
@click.argument("name")
@click.option("--url", required=True, help="http(s) URL the JSON is POSTed to.")
@click.option("--ca-file", help="CA certificates to trust instead of the system's.")
@_events_option
@_secret_option
@pass_state
def notify_add_webhook(
    state: CliState,
    name: str,
    url: str,
    ca_file: str | None,
    events: tuple[str, ...],
    secret_stdin: bool,
) -> None:
    """POST notifications as JSON, signed (X-Tapir-Signature) when a secret is given."""
    target = state.appliance().add_notification_target(
        name,
        "webhook",
        {"url": url, "ca_file": ca_file},
        events=list(events),
        secret=_read_secret(secret_stdin),
    )
    click.echo(f"notification target {target.name} added ({', '.join(target.events)})")


def target_record(t: Any) -> dict[str, Any]:
    """A target as the CLI and the API show it (never its secret)."""
    where = t.config.get("url") if t.kind == "webhook" else ", ".join(t.config.get("to", []))
    return {
        "name": t.name,
        "kind": t.kind,
        "events": list(t.events or []),
        "destination": where,
        "config": dict(t.config),
        "has_secret": bool(t.secret_name),
        "enabled": t.enabled,
        "last_sent_at": t.last_sent_at,
        "last_error": t.last_error,
    }


@notify.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def notify_list(state: CliState, as_json: bool) -> None:
    """List notification targets and how their last delivery went."""
    records = [target_record(t) for t in state.appliance().notification_targets()]
    if as_json:
        print_json(records)
        return
    print_table(
        ["name", "kind", "to", "events", "last sent", "last error"],
        [
            [
                r["name"],
                r["kind"],
                r["destination"],
                ", ".join(r["events"]),
                format_time(r["last_sent_at"]),
                r["last_error"] or "",
            ]
            for r in records
        ],
        empty="no notification targets; add one with 'tapir notify add email|webhook'",
    )


@notify.command("test")
@click.argument("name")
@pass_state
def notify_test(state: CliState, name: str) -> None:
    """Send a test message to a target now."""
    delivery = state.appliance().test_notification_target(name)
    if delivery.error:
        raise click.ClickException(f"delivery to {name} failed: {delivery.error}")
    click.echo(f"test notification delivered to {name}")


@notify.command("remove")
@click.argument("name")
@pass_state
def notify_remove(state: CliState, name: str) -> None:
    """Delete a target and its stored secret."""
    state.appliance().remove_notification_target(name)
    click.echo(f"notification target {name} removed")
