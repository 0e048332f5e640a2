"""Operator commands: ``tapir hw``, ``tapir changer`` and ``tapir drive``.

``register(cli)`` adds the three groups to the root command. Every command
takes ``--device``: a /dev/sgN path or an iscsi://host:port/target/lun URL,
like ``mtx -f``. Output is a table, or JSON with ``--json`` for scripts.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from .changer import Inventory, MediaChanger
from .discovery import scan
from .drive import TapeDrive
from .elements import ElementKind
from .errors import HardwareError, TapeCondition
from .iscsi import IscsiAddress, IscsiTransport
from .tapealert import CLEANING_FLAGS, read_tapealert
from .transport import TransportError

F = TypeVar("F", bound=Callable[..., Any])

#: Turns a device name registered by the caller (e.g. the appliance's catalog) into
#: a path or URL; set by :func:`register`. None: only paths and URLs are accepted.
_resolve_name: Callable[[str], str] | None = None


def _device_address(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if value.startswith("/") or "://" in value or _resolve_name is None:
        return value
    try:
        return _resolve_name(value)
    except (KeyError, ValueError) as exc:
        raise click.BadParameter(str(exc).strip("'\""), ctx=ctx, param=param) from None


device_option = click.option(
    "--device",
    "-f",
    required=True,
    metavar="PATH|URL|NAME",
    callback=_device_address,
    help="/dev/sgN, iscsi://host:port/target-iqn/lun, or a registered device name",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def _operator_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (HardwareError, TransportError, ValueError) as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper  # type: ignore[return-value]


def _emit(obj: object) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True))


def _console() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _inventory_table(inv: Inventory, title: str) -> Table:
    table = Table(title=title)
    for col in ("element", "address", "state", "barcode", "note"):
        table.add_column(col)
    for el in [*inv.drives, *inv.slots, *inv.mail_slots]:
        note = []
        if el.cleaning:
            note.append("cleaning")
        if el.source:
            note.append(f"from {el.source[0].value} {el.source[1]}")
        if el.serial:
            note.append(f"serial {el.serial}")
        if el.exception:
            note.append("exception {:02x}/{:02x}".format(*el.exception))
        table.add_row(
            el.name,
            str(el.address),
            "full" if el.full else "empty",
            el.barcode or "",
            ", ".join(note),
        )
    return table


def register(cli: click.Group, resolve_name: Callable[[str], str] | None = None) -> None:
    """Add the ``hw``, ``changer`` and ``drive`` groups to ``cli``.

    ``resolve_name`` maps a registered device name to its path or URL, so that
    ``--device`` also takes names (it raises KeyError for an unknown name).
    """
    global _resolve_name
    _resolve_name = resolve_name
    cli.add_command(hw)
    cli.add_command(changer)
    cli.add_command(drive)


# --- hw ------------------------------------------------------------------------


@click.group()
def hw() -> None:
    """Find tape hardware."""


@hw.command("scan")
@click.option(
    "--iscsi",
    "iscsi_targets",
    multiple=True,
    metavar="URL",
    help="Also probe LUNs 0..15 of iscsi://host:port/target-iqn.",
)
@json_option
@_operator_errors
def hw_scan(iscsi_targets: tuple[str, ...], as_json: bool) -> None:
    """List changers and tape drives: local SCSI generic nodes and iSCSI LUNs."""
    rows: list[dict[str, object]] = [
        {**d.to_dict(), "attached": "sg", "device": d.sg} for d in scan()
    ]
    for base in iscsi_targets:
        rows += _scan_iscsi(base)
    if as_json:
        _emit(rows)
        return
    table = Table(title="tape hardware")
    for col in ("device", "kind", "vendor", "model", "serial", "attached", "tape node"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            str(r["device"]),
            str(r["kind"]),
            str(r["vendor"]),
            str(r["model"]),
            str(r.get("serial") or ""),
            str(r["attached"]),
            str(r.get("nst") or ""),
        )
    _console().print(table if rows else "no changers or tape drives found")


def _scan_iscsi(base: str) -> list[dict[str, object]]:
    from .inquiry import inquire

    IscsiAddress.parse(base.rstrip("/") + "/0")  # validate early
    found = []
    for lun in range(16):
        url = f"{base.rstrip('/')}/{lun}"
        try:
            with IscsiTransport(url, timeout=10) as t:
                info = inquire(t)
        except (TransportError, HardwareError):
            continue
        if info.kind in ("tape", "changer"):
            found.append(
                {
                    "device": url,
                    "kind": info.kind,
                    "vendor": info.vendor,
                    "model": info.product,
                    "revision": info.revision,
                    "serial": info.serial,
                    "attached": "iscsi",
                }
            )
    return found


# --- changer ---------------------------------------------------------------------


@click.group()
def changer() -> None:
    """Operate a tape library's media changer."""


@changer.command("status")
@device_option
@json_option
@_operator_errors
def changer_status(device: str, as_json: bool) -> None:
    """Identity and a one-line summary per element kind."""
    with MediaChanger.open(device) as ch:
        info = ch.inquiry()
        inv = ch.inventory()
    summary = {
        "device": device,
        "vendor": info.vendor,
        "product": info.product,
        "serial": info.serial,
        "slots": {"total": len(inv.slots), "full": sum(e.full for e in inv.slots)},
        "mail_slots": {"total": len(inv.mail_slots), "full": sum(e.full for e in inv.mail_slots)},
        "drives": {"total": len(inv.drives), "full": sum(e.full for e in inv.drives)},
    }
    if as_json:
        _emit(summary)
        return
    click.echo(f"{info.vendor} {info.product} (serial {info.serial or '?'}) at {device}")
    for key in ("slots", "mail_slots", "drives"):
        part = summary[key]
        click.echo(f"  {key.replace('_', ' ')}: {part['full']}/{part['total']} full")  # type: ignore[index]


@changer.command("inventory")
@device_option
@click.option("--init", is_flag=True, help="Rescan all elements first (slow).")
@json_option
@_operator_errors
def changer_inventory(device: str, init: bool, as_json: bool) -> None:
    """Every slot, mail slot and drive with its barcode."""
    with MediaChanger.open(device) as ch:
        if init:
            ch.initialize_element_status()
        inv = ch.inventory()
    if as_json:
        _emit(inv.to_dict())
    else:
        _console().print(_inventory_table(inv, device))


@changer.command("load")
@device_option
@click.argument("slot", type=int)
@click.argument("drive_number", metavar="DRIVE", type=int, default=0)
@_operator_errors
def changer_load(device: str, slot: int, drive_number: int) -> None:
    """Load the cartridge in SLOT into DRIVE (default 0)."""
    with MediaChanger.open(device) as ch:
        ch.load(slot, drive_number)
    click.echo(f"slot {slot} -> drive {drive_number}")


@changer.command("unload")
@device_option
@click.argument("drive_number", metavar="DRIVE", type=int, default=0)
@click.option("--slot", type=int, help="Destination slot (default: the cartridge's home slot).")
@_operator_errors
def changer_unload(device: str, drive_number: int, slot: int | None) -> None:
    """Return the cartridge in DRIVE to its home slot."""
    with MediaChanger.open(device) as ch:
        used = ch.unload(drive_number, slot)
    click.echo(f"drive {drive_number} -> slot {used}")


@changer.command("move")
@device_option
@click.argument("source")
@click.argument("destination")
@_operator_errors
def changer_move(device: str, source: str, destination: str) -> None:
    """Move between elements: slot:N, mail:N or drive:N."""
    with MediaChanger.open(device) as ch:
        ch.move(source, destination)
    click.echo(f"{source} -> {destination}")


@changer.command("import")
@device_option
@click.argument("mail", type=int)
@click.option("--slot", type=int, help="Destination slot (default: first empty).")
@_operator_errors
def changer_import(device: str, mail: int, slot: int | None) -> None:
    """Take the cartridge in mail slot MAIL into the library."""
    with MediaChanger.open(device) as ch:
        used = ch.import_(mail, slot)
    click.echo(f"mail {mail} -> slot {used}")


@changer.command("export")
@device_option
@click.argument("slot", type=int)
@click.option("--mail", type=int, help="Mail slot (default: first empty).")
@_operator_errors
def changer_export(device: str, slot: int, mail: int | None) -> None:
    """Put the cartridge in SLOT into a mail slot for removal."""
    with MediaChanger.open(device) as ch:
        used = ch.export(slot, mail)
    click.echo(f"slot {slot} -> mail {used}")


# --- drive -----------------------------------------------------------------------


@click.group()
def drive() -> None:
    """Operate a tape drive."""


@drive.command("status")
@device_option
@json_option
@_operator_errors
def drive_status(device: str, as_json: bool) -> None:
    """Identity, readiness, medium, write protection and block size."""
    with TapeDrive.open(device) as d:
        info = d.inquiry()
        st = d.status()
    out = {
        "device": device,
        "vendor": info.vendor,
        "product": info.product,
        "serial": info.serial,
        "ready": st.ready,
        "medium_present": st.medium_present,
        "write_protected": st.write_protected,
        "block_size": st.block_size,
        "density_code": st.density_code,
        "sense": st.sense,
    }
    if as_json:
        _emit(out)
        return
    click.echo(f"{info.vendor} {info.product} (serial {info.serial or '?'}) at {device}")
    click.echo(
        f"  {'ready' if st.ready else 'not ready'}, "
        f"{'medium present' if st.medium_present else 'no medium'}, "
        f"{'write-protected' if st.write_protected else 'writable'}, "
        f"block size {st.block_size or 'variable'}"
    )
    if st.sense:
        click.echo(f"  sense: {st.sense}")


@drive.command("rewind")
@device_option
@_operator_errors
def drive_rewind(device: str) -> None:
    """Rewind the tape."""
    with TapeDrive.open(device) as d:
        d.wait_ready()
        d.rewind()
    click.echo("rewound")


@drive.command("eject")
@device_option
@_operator_errors
def drive_eject(device: str) -> None:
    """Rewind and eject (UNLOAD), ready for the changer to take the cartridge."""
    with TapeDrive.open(device) as d:
        d.unload()
    click.echo("ejected")


@drive.command("tapealert")
@device_option
@json_option
@_operator_errors
def drive_tapealert(device: str, as_json: bool) -> None:
    """Active TapeAlert flags (reading clears them on most drives)."""
    with TapeDrive.open(device) as d:
        alerts = read_tapealert(d.transport)
    if as_json:
        _emit([{"flag": a.flag, "message": a.message} for a in alerts])
        return
    for a in alerts:
        click.echo(f"{a.flag:3d}  {a.message}")
    if not alerts:
        click.echo("no TapeAlert flags set")


@drive.command("clean")
@device_option
@click.option(
    "--changer", "changer_device", required=True, metavar="PATH|URL", help="The library's changer."
)
@click.option(
    "--drive",
    "drive_number",
    type=int,
    default=0,
    show_default=True,
    help="This drive's number in the library.",
)
@click.option(
    "--timeout",
    type=float,
    default=600.0,
    show_default=True,
    help="Seconds to wait for the cleaning cycle.",
)
@_operator_errors
def drive_clean(device: str, changer_device: str, drive_number: int, timeout: float) -> None:
    """Load a cleaning cartridge (barcode CLN...), wait for the cycle, put it back."""
    with MediaChanger.open(changer_device) as ch:
        inv = ch.inventory()
        cleaner = next((e for e in inv.slots if e.cleaning), None)
        if cleaner is None:
            raise click.ClickException("no cleaning cartridge (barcode CLN...) in any slot")
        ch.load(cleaner.number, drive_number)
        try:
            with TapeDrive.open(device) as d:
                _wait_cleaning(d, timeout)
                d.unload()
        finally:
            if ch.inventory().get(ElementKind.DRIVE, drive_number).full:
                ch.unload(drive_number, cleaner.number)
    click.echo(f"cleaned drive {drive_number} with {cleaner.barcode}")


def _wait_cleaning(d: TapeDrive, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sense = d.test_unit_ready()
        if sense is None or sense.asc == 0x30:
            # Ready again, or the drive says "cleaning cartridge installed": done.
            return
        time.sleep(1)
    raise TapeCondition(f"cleaning did not finish within {timeout:.0f} s")


__all__ = ["CLEANING_FLAGS", "changer", "drive", "hw", "register"]
