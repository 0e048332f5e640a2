"""``tapir endpoint``: register vCenters, hypervisors and servers; test and discover them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click

from ..catalog.models import Endpoint
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
    }


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
    as_json: bool,
) -> None:
    """Register the endpoint NAME (nothing is stored when the input is refused)."""
    source = state.registry.source_plugin(plugin)
    opts = parse_options(options, source.endpoint_options())
    if user is not None:
        opts["user"] = user
    if fingerprint is not None:
        opts["fingerprint"] = check_fingerprint(fingerprint)
    if not verify_tls:
        opts["verify_tls"] = False
    password = read_password(password_file) if password_file is not None else None
    row = state.appliance().register_endpoint(
        name, plugin, address, options=opts, password=password
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
        ["name", "plugin", "address", "last discovery"],
        [(r.name, r.plugin, r.address, format_time(r.last_discovery_at)) for r in rows],
        empty="no endpoints",
    )


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
