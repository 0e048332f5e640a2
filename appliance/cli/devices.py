"""``tapir device``: tape changers and drives registered by name in the catalog."""

from __future__ import annotations

from typing import Any

import click

from ..catalog.models import Device
from .output import print_json, print_table
from .state import CliState, pass_state


@click.group()
def device() -> None:
    """Tape changers and drives known to the appliance (usable as --device NAME)."""


def device_record(d: Device, names: dict[int, str]) -> dict[str, Any]:
    return {
        "name": d.name,
        "kind": d.kind,
        "address": d.address,
        "vendor": d.vendor,
        "model": d.model,
        "serial": d.serial,
        "changer": names.get(d.changer_id) if d.changer_id else None,
        "drive_number": d.drive_number,
    }


@device.command("add")
@click.argument("name")
@click.option("--kind", type=click.Choice(["changer", "drive"]), required=True)
@click.option(
    "--device",
    "address",
    required=True,
    metavar="PATH|URL",
    help="/dev/sgN or iscsi://host:port/target-iqn/lun",
)
@click.option("--changer", default=None, help="For a drive in a library: its changer's name.")
@click.option(
    "--number",
    "drive_number",
    type=int,
    default=None,
    help="For a drive in a library: its drive number there (0..M).",
)
@click.option("--no-check", is_flag=True, help="Register without asking the device (INQUIRY).")
@pass_state
def device_add(
    state: CliState,
    name: str,
    kind: str,
    address: str,
    changer: str | None,
    drive_number: int | None,
    no_check: bool,
) -> None:
    """Register the changer or drive NAME at a path or URL."""
    d = state.appliance().register_device(
        name, kind, address, changer=changer, drive_number=drive_number, check=not no_check
    )
    what = f"{d.vendor} {d.model} (serial {d.serial or '?'})" if d.vendor else "unchecked"
    click.echo(f"registered {d.kind} {d.name} at {d.address}: {what}")


@device.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def device_list(state: CliState, as_json: bool) -> None:
    """List registered changers and drives."""
    rows = state.appliance().devices()
    names = {d.id: d.name for d in rows}
    records = [device_record(d, names) for d in rows]
    if as_json:
        print_json(records)
        return
    print_table(
        ["name", "kind", "address", "model", "serial", "in library"],
        [
            [
                r["name"],
                r["kind"],
                r["address"],
                f"{r['vendor']} {r['model']}".strip(),
                r["serial"],
                f"{r['changer']} drive {r['drive_number']}" if r["changer"] else "",
            ]
            for r in records
        ],
        empty="no devices; register one with 'tapir device add'",
    )


@device.command("remove")
@click.argument("name")
@pass_state
def device_remove(state: CliState, name: str) -> None:
    """Forget the device NAME (a changer only once its drives are removed)."""
    state.appliance().remove_device(name)
    click.echo(f"removed device {name}")
