"""``tapir endpoint``: register vCenters, hypervisors and servers; test and discover them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click

from ..catalog.models import Endpoint
from ..engine.discovery import format_interval, parse_interval
from .options import parse_options
from .output import format_time, print_fields, print_json, print_table
from .state import CliState, pass_state

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def read_password(password_file: Path) -> str:
    """The first line of a password file; refuses an empty one."""
    text = password_file.read_text(encoding="utf-8")
    password = text.splitlines()[0] if text else ""
    if not password:
        raise ValueError(f"the password file {password_file} is empty")
    return password


def check_fingerprint(value: str) -> str:
    """A SHA-256 certificate fingerprint as given (colons allowed); ValueError when malformed."""
    if not _SHA256.match(value.strip().lower().replace(":", "")):
        raise ValueError(
            f"invalid --fingerprint {value!r}: expected a SHA-256 fingerprint "
            "(64 hex digits, colons allowed)"
        )
    return value.strip()


def _record(row: Endpoint) -> dict[str, Any]:
    return {
        "name": row.name,
        "plugin": row.plugin,
        "address": row.address,
        "options": dict(row.options),
        "has_password": row.secret_name is not None,
        "created_at": row.created_at,
        "last_discovery_at": row.last_discovery_at,
        "discovery_interval": row.discovery_interval,
        "next_discovery_at": row.next_discovery_at if row.discovery_interval else None,
        "last_discovery_error": row.last_discovery_error,
    }


def _interval(text: str | None) -> int | None:
    try:
        return None if text is None else parse_interval(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--discovery-interval") from None


_INTERVAL_HELP = "How often 'tapir serve' discovers it: 30m, 1h (default), 1d or off."


@click.group()
def endpoint() -> None:
    """Endpoints: vCenters, hypervisor pools, database and file servers."""


@endpoint.command("add")
@click.argument("name")
@click.option("--plugin", required=True, help="Source plugin of the endpoint, e.g. vmware.")
@click.option("--address", required=True, metavar="HOST[:PORT]", help="Where it answers.")
@click.option("--user", help="User name to log in with.")
@click.option(
    "--password-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="File whose first line is the password (sealed in the catalog, never stored plain).",
)
@click.option("--fingerprint", metavar="SHA256", help="Pinned SHA-256 certificate fingerprint.")
@click.option(
    "--verify-tls/--no-verify-tls",
    default=True,
    show_default=True,
    help="Verify the TLS certificate (prefer --fingerprint to turning this off).",
)
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE", help="Plugin option.")
@click.option("--discovery-interval", "discovery_interval", metavar="DURATION", help=_INTERVAL_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def endpoint_add(
    state: CliState,
    name: str,
    plugin: str,
    address: str,
    user: str | None,
    password_file: Path | None,
    fingerprint: str | None,
    verify_tls: bool,
    options: tuple[str, ...],
    discovery_interval: str | None,
    as_json: bool,
) -> None:
    """Register the endpoint NAME (nothing is stored when the input is refused)."""
    interval = _interval(discovery_interval)
    source = state.registry.source_plugin(plugin)
    opts = parse_options(options, source.endpoint_options())
    if user is not None:
        opts["user"] = user
    if fingerprint is not None:
        opts["fingerprint"] = check_fingerprint(fingerprint)
    if not verify_tls:
        opts["verify_tls"] = False
    password = read_password(password_file) if password_file is not None else None
    extra = {} if interval is None else {"discovery_interval": interval}
    row = state.appliance().register_endpoint(
        name, plugin, address, options=opts, password=password, **extra
    )
    if as_json:
        print_json(_record(row))
    else:
        click.echo(f"endpoint {row.name} registered ({row.plugin} at {row.address})")


@endpoint.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def endpoint_list(state: CliState, as_json: bool) -> None:
    """List the registered endpoints."""
    rows = state.appliance().endpoints()
    if as_json:
        print_json([_record(r) for r in rows])
        return
    print_table(
        ["name", "plugin", "address", "last discovery", "every", "next", "last error"],
        [
            (
                r.name,
                r.plugin,
                r.address,
                format_time(r.last_discovery_at),
                format_interval(r.discovery_interval),
                format_time(r.next_discovery_at) if r.discovery_interval else "-",
                r.last_discovery_error or "",
            )
            for r in rows
        ],
        empty="no endpoints",
    )


@endpoint.command("set")
@click.argument("name")
@click.option("--discovery-interval", "discovery_interval", metavar="DURATION", help=_INTERVAL_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def endpoint_set(state: CliState, name: str, discovery_interval: str | None, as_json: bool) -> None:
    """Change the endpoint NAME's settings."""
    interval = _interval(discovery_interval)
    if interval is None:
        raise click.UsageError("nothing to change: give --discovery-interval")
    row = state.appliance().set_discovery_interval(name, interval)
    if as_json:
        print_json(_record(row))
    else:
        when = f"every {format_interval(interval)}" if interval else "on demand only"
        click.echo(f"endpoint {name}: discovered {when}")


@endpoint.command("test")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def endpoint_test(state: CliState, name: str, as_json: bool) -> None:
    """Log in to NAME once; exits 1 with the reason when that fails."""
    state.appliance().test_endpoint(name)
    if as_json:
        print_json({"name": name, "ok": True})
    else:
        click.echo(f"endpoint {name}: connection ok")


@endpoint.command("discover")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def endpoint_discover(state: CliState, name: str, as_json: bool) -> None:
    """Discover NAME's assets now and record them in the catalog."""
    report = state.appliance().discover_endpoint(name)
    data = {
        "endpoint": report.endpoint,
        "found": report.found,
        "added": report.added,
        "renamed": [list(r) for r in report.renamed],
        "returned": report.returned,
        "gone": report.gone,
    }
    if as_json:
        print_json(data)
        return
    print_fields(
        {
            "found": report.found,
            "added": ", ".join(report.added) or "-",
            "renamed": ", ".join(f"{a} -> {b}" for a, b in report.renamed) or "-",
            "back again": ", ".join(report.returned) or "-",
            "gone (backups kept)": ", ".join(report.gone) or "-",
        },
        title=f"endpoint {name}",
    )
