"""The ``tapir tape`` commands: volumes, inventory, labelling, expiry, vaulting, cleaning, rebuild.

Each command asks for the tape plugin's context (``plugin_context("tape")``) when
it runs, so ``--help`` works without an appliance. Listings take ``--json``.
Errors are raised as TapirError, KeyError or ValueError: the ``tapir`` root
prints them as one ``error:`` line and exits 1.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from tapir.appliance.plugin_api import (
    VOLUME_STATES,
    DeviceInfo,
    PluginContext,
    TapirError,
    VolumeInfo,
)

from .drive_key_cli import register_drive_key

ContextFactory = Callable[[str], PluginContext]


# --- output -----------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def print_json(data: Any) -> None:
    """``data`` as indented JSON with sorted keys on stdout."""
    sys.stdout.write(
        json.dumps(data, default=_json_default, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    )


def print_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, empty: str) -> None:
    """Rows as a plain table (``-`` for None)."""
    rows = list(rows)
    # Off a terminal a row stays on one line, for grep and less.
    width = None if sys.stdout.isatty() else 100_000
    console = Console(file=sys.stdout, highlight=False, soft_wrap=True, width=width)
    if not rows:
        console.print(f"({empty})", markup=False)
        return
    table = Table(show_edge=False, header_style="bold", pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("-" if cell is None else str(cell) for cell in row))
    console.print(table)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def volume_record(v: VolumeInfo) -> dict[str, Any]:
    """A volume as ``tapir tape volumes --json`` prints it."""
    return {
        "barcode": v.label,
        "pool": v.pool,
        "uuid": v.uuid,
        "state": v.state,
        "location": v.location,
        "media_set": v.media_set,
        "media_set_seq": v.media_set_seq,
        "bytes_used": v.bytes_used,
        "bytes_total": v.bytes_total,
        "expires_at": v.expires_at,
        "last_written_at": v.last_written_at,
        "worm": v.worm,
        "cleaning": v.cleaning,
        "cleaning_uses": v.cleaning_uses,
        "labeled": v.labeled,
        "media_type": v.media_type,
        "error_count": v.error_count,
        "note": v.note,
    }


# --- helpers ----------------------------------------------------------------


def _drives(ctx: PluginContext, changer: str, names: Sequence[str]) -> list[DeviceInfo]:
    assert ctx.devices is not None
    if not names:
        drives = ctx.devices.drives_of(changer)
        if not drives:
            raise TapirError(f"changer {changer} has no registered drives ('tapir device add')")
        return drives
    chosen = [ctx.devices.get(name) for name in names]
    for d in chosen:
        if d.kind != "drive" or d.changer != changer:
            raise TapirError(f"{d.name} is not a drive of changer {changer}")
    return chosen


changer_option = click.option(
    "--changer", required=True, metavar="NAME", help="Registered changer name."
)
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def register(cli: click.Group, plugin_context: ContextFactory) -> None:
    """Add the ``tape`` group to the ``tapir`` command line."""

    def tape_ctx() -> PluginContext:
        ctx = plugin_context("tape")
        if ctx.volumes is None or ctx.devices is None:
            raise TapirError("the tape plugin received no volume registry or device look-up")
        return ctx

    @cli.group("tape")
    def tape() -> None:
        """Tape volumes: inventory, labels, expiry, vaulting, cleaning, catalog rebuild."""

    @tape.command("volumes")
    @click.option("--pool", metavar="NAME", help="Only this pool's volumes.")
    @click.option("--state", type=click.Choice(VOLUME_STATES), help="Only volumes in this state.")
    @json_option
    def volumes_cmd(pool: str | None, state: str | None, as_json: bool) -> None:
        """List tape volumes: barcode, pool, state, location, media set, use, expiry."""
        ctx = tape_ctx()
        assert ctx.volumes is not None
        if pool is not None:
            ctx.catalog["pool_info"](pool)  # KeyError naming an unknown pool
        rows = ctx.volumes.list(pool=pool, state=state)
        if as_json:
            print_json([volume_record(v) for v in rows])
            return
        print_table(
            [
                "barcode",
                "pool",
                "state",
                "location",
                "media set",
                "seq",
                "used",
                "expires",
                "worm",
                "cleaning uses",
            ],
            [
                [
                    v.label,
                    v.pool or "(scratch)",
                    v.state + ("" if v.labeled or v.cleaning else ", unlabelled"),
                    v.location or "unknown",
                    (v.media_set or "")[:12] or None,
                    v.media_set_seq,
                    _size(v.bytes_used),
                    _when(v.expires_at),
                    "WORM" if v.worm else "",
                    v.cleaning_uses if v.cleaning else "",
                ]
                for v in rows
            ],
            empty="no volumes; run 'tapir tape inventory --changer NAME'",
        )

    @tape.command("inventory")
    @changer_option
    @json_option
    def inventory_cmd(changer: str, as_json: bool) -> None:
        """Read the library's inventory and bring the volume rows up to date."""
        from .inventory import sync_inventory
        from .library import Library

        ctx = tape_ctx()
        library = Library(ctx, changer)
        try:
            report = sync_inventory(ctx, changer, library.inventory())
        finally:
            library.close()
        if as_json:
            print_json(report.as_dict())
            return
        for barcode in report.created:
            click.echo(f"new volume {barcode} (unlabelled scratch)")
        for barcode in report.cleaning_created:
            click.echo(f"new cleaning cartridge {barcode}")
        for barcode, before, after in report.moved:
            click.echo(f"{barcode}: {before or 'unknown'} -> {after}")
        for barcode in report.offline:
            click.echo(f"{barcode}: not in the library, now offline")
        for where in report.no_barcode:
            click.echo(f"warning: the cartridge in {where} has no readable barcode", err=True)
        click.echo(
            f"changer {changer}: {len(report.created) + len(report.cleaning_created)} new, "
            f"{len(report.moved)} moved, {len(report.offline)} offline, "
            f"{report.unchanged} unchanged"
        )

    @tape.command("label")
    @click.argument("barcodes", nargs=-1)
    @click.option("--all-new", is_flag=True, help="Every data cartridge never labelled.")
    @changer_option
    @click.option("--pool", metavar="NAME", help="Tape pool the volumes join as scratch.")
    @click.option("--scratch", is_flag=True, help="Join the common scratch pool (no pool).")
    @click.option(
        "--drive",
        "drive_names",
        multiple=True,
        metavar="NAME",
        help="Drive(s) to use [default: the changer's drives].",
    )
    @click.option(
        "--force", is_flag=True, help="Overwrite another pool's or a foreign tape (audited)."
    )
    @json_option
    def label_cmd(
        barcodes: tuple[str, ...],
        all_new: bool,
        changer: str,
        pool: str | None,
        scratch: bool,
        drive_names: tuple[str, ...],
        force: bool,
        as_json: bool,
    ) -> None:
        """Write media labels on cartridges BARCODES (or --all-new) for a pool."""
        from .inventory import sync_inventory
        from .labelling import label_volumes, new_cartridges
        from .library import Library

        if (pool is None) == (not scratch):
            raise click.UsageError("give exactly one of --pool NAME and --scratch")
        if bool(barcodes) == all_new:
            raise click.UsageError("give BARCODE(s) or --all-new (not both)")
        ctx = tape_ctx()
        assert ctx.volumes is not None
        drives = _drives(ctx, changer, drive_names)
        library = Library(ctx, changer)
        try:
            sync_inventory(ctx, changer, library.inventory())
        finally:
            library.close()
        wanted = new_cartridges(ctx.volumes.list()) if all_new else list(barcodes)
        if not wanted:
            click.echo("no new cartridges to label")
            return

        def show(outcome: Any) -> None:
            if not as_json:
                prefix = "FORCED " if outcome.forced else ""
                click.echo(f"{prefix}{outcome.barcode}: {outcome.status}: {outcome.message}")

        outcomes = label_volumes(ctx, changer, drives, wanted, pool=pool, force=force, report=show)
        if as_json:
            print_json([o.as_dict() for o in outcomes])
        refused = [o for o in outcomes if o.status == "refused"]
        if refused:
            raise TapirError(
                f"{len(refused)} of {len(outcomes)} cartridge(s) not labelled: "
                + ", ".join(o.barcode for o in refused)
            )

    @tape.command("expire")
    @click.option("--pool", metavar="NAME", help="Only this tape pool [default: every one].")
    @click.option("--dry-run", is_flag=True, help="Say what would expire; change nothing.")
    @json_option
    def expire_cmd(pool: str | None, dry_run: bool, as_json: bool) -> None:
        """Apply each tape pool's retention: expired media sets return to scratch."""
        from . import appliance_calls
        from .lifecycle import expire

        ctx = tape_ctx()
        report = expire(
            ctx,
            pool=pool,
            dry_run=dry_run,
            recovery_points=appliance_calls.recovery_points,
            prune=appliance_calls.prune_missing,
        )
        if as_json:
            print_json(report.as_dict())
        else:
            for line in report.lines():
                click.echo(line)
        if report.errors:
            raise TapirError("; ".join(report.errors))

    @tape.command("export")
    @click.option("--pool", required=True, metavar="NAME", help="Tape pool.")
    @click.option("--media-set", metavar="UUID", help="The media set to send out.")
    @click.option("--current", is_flag=True, help="The pool's newest media set.")
    @changer_option
    @click.option("--note", default="", help="Where the cartridges go (vault: NOTE).")
    @json_option
    def export_cmd(
        pool: str, media_set: str | None, current: bool, changer: str, note: str, as_json: bool
    ) -> None:
        """Move a media set's cartridges to the mail slots for off-site vaulting."""
        from .vault import export_media_set

        if bool(media_set) == current:
            raise click.UsageError("give exactly one of --media-set UUID and --current")
        ctx = tape_ctx()
        report = export_media_set(
            ctx, pool, changer, media_set=media_set, current=current, note=note
        )
        if as_json:
            print_json(report.as_dict())
        else:
            for line in report.lines():
                click.echo(line)

    @tape.command("import")
    @changer_option
    @json_option
    def import_cmd(changer: str, as_json: bool) -> None:
        """Take cartridges from the mail slots into free storage slots."""
        from .vault import import_cartridges

        ctx = tape_ctx()
        report = import_cartridges(ctx, changer)
        if as_json:
            print_json(report.as_dict())
        else:
            for line in report.lines():
                click.echo(line)

    @tape.command("vault-report")
    @click.option("--pool", metavar="NAME", help="Only this pool's cartridges.")
    @json_option
    def vault_report_cmd(pool: str | None, as_json: bool) -> None:
        """Which cartridges are out of the library, what they hold, when they expire."""
        from . import appliance_calls
        from .vault import vault_report

        ctx = tape_ctx()
        entries = vault_report(ctx, pool=pool, recovery_points=appliance_calls.recovery_points)
        if as_json:
            print_json([e.as_dict() for e in entries])
            return
        print_table(
            [
                "barcode",
                "pool",
                "location",
                "media set",
                "seq",
                "key fingerprint",
                "expires",
                "recovery points",
            ],
            [
                [
                    e.barcode,
                    e.pool,
                    e.location,
                    (e.media_set or "")[:12] or None,
                    e.media_set_seq,
                    e.key_fingerprint or "-",
                    _when(e.expires_at) if e.expires_at else e.expiry_rule,
                    "; ".join(
                        f"{p['asset']} {str(p['created_at'])[:16]}" for p in e.recovery_points
                    )
                    or "-",
                ]
                for e in entries
            ],
            empty="no cartridges out of the library",
        )

    @tape.command("clean")
    @changer_option
    @click.option("--drive", "drive_name", required=True, metavar="NAME", help="Drive to clean.")
    @click.option(
        "--max-uses",
        type=click.IntRange(1),
        default=50,
        show_default=True,
        help="Uses after which a cleaning cartridge is retired.",
    )
    @json_option
    def clean_cmd(changer: str, drive_name: str, max_uses: int, as_json: bool) -> None:
        """Clean a drive with a cleaning cartridge (CLN...) and count the use."""
        from .cleaning import clean_drive

        ctx = tape_ctx()
        (drive,) = _drives(ctx, changer, [drive_name])
        result = clean_drive(ctx, changer, drive, max_uses=max_uses)
        if as_json:
            print_json(result.as_dict())
            return
        click.echo(
            f"cleaned {result.drive} with {result.cartridge} "
            f"(use {result.uses} of {result.max_uses})"
        )
        if result.retired:
            click.echo(f"{result.cartridge} reached its maximum uses and is retired")

    register_drive_key(tape, tape_ctx)

    @tape.group("catalog")
    def catalog() -> None:
        """The tape catalog: rebuild it from the tapes alone."""

    @catalog.command("rebuild")
    @changer_option
    @click.option("--pool", metavar="NAME", help="Only this pool's tapes [default: every one].")
    @click.option(
        "--drive",
        "drive_names",
        multiple=True,
        metavar="NAME",
        help="Drive(s) to use [default: the changer's drives].",
    )
    @click.option(
        "--replace",
        is_flag=True,
        help="Rebuild an existing index even if it knows media sets not in the library.",
    )
    @click.option(
        "--attach/--no-attach",
        default=True,
        show_default=True,
        help="Attach pools the catalog lacks and rescan them.",
    )
    @click.option(
        "--option",
        "options",
        multiple=True,
        metavar="KEY=VALUE",
        help="More pool options for the attach (allocation, retention...).",
    )
    @json_option
    def rebuild_cmd(
        changer: str,
        pool: str | None,
        drive_names: tuple[str, ...],
        replace: bool,
        attach: bool,
        options: tuple[str, ...],
        as_json: bool,
    ) -> None:
        """Read every Tapir cartridge in the library and rebuild volumes and tape indexes.

        Pools found on the tapes that the catalog lacks are attached (changer and
        drives as given here, plus --option) and rescanned, so that 'tapir backups'
        lists their recovery points; an encrypted pool needs its key imported first.
        """
        from . import appliance_calls
        from .rebuild import rebuild_catalog

        ctx = tape_ctx()
        drives = _drives(ctx, changer, drive_names)
        # One --option per drive: the command line's list options are repeated.
        drive_options = [a for d in drives for a in ("--option", f"drives={d.name}")]

        def attach_pool(name: str) -> None:
            extra = [a for o in options for a in ("--option", o)]
            result = appliance_calls.run_tapir(
                [
                    "pool",
                    "attach",
                    name,
                    "--media",
                    "tape",
                    "--option",
                    f"changer={changer}",
                    *drive_options,
                    *extra,
                ]
            )
            if result.code:
                raise TapirError(result.output.strip() or f"attach exited {result.code}")

        def rescan_pool(name: str) -> dict[str, Any]:
            result = appliance_calls.run_tapir(["pool", "rescan", name, "--json"])
            doc = result.json()
            if result.code:
                raise TapirError(f"rescan of {name} reported problems: {doc}")
            return doc

        report = rebuild_catalog(
            ctx,
            changer,
            drives,
            pool=pool,
            replace=replace,
            attach=attach_pool if attach else None,
            rescan=rescan_pool if attach else None,
        )
        if as_json:
            print_json(report.as_dict())
        else:
            for line in report.lines():
                click.echo(line)
        if report.errors:
            raise TapirError(f"{len(report.errors)} problem(s) while rebuilding; see above")
