"""``tapir files ls|find|get``: browse and restore files inside image backups.

An address is ``DISK:VOLUME/PATH``: ``tapir files ls BACKUP`` lists the disks,
``ls BACKUP DISK`` their volumes, ``ls BACKUP DISK:VOLUME/PATH`` a folder.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import click

from .output import format_bytes, format_time, print_json, print_table
from .state import CliState, pass_state

ADDRESS_HELP = "DISK (number or name), DISK:VOLUME (partition number, vg-lv, 0) or DISK:VOLUME/PATH"


def _when(ts: float | None) -> str:
    return format_time(datetime.fromtimestamp(ts, UTC)) if ts else "-"


def _entry_rows(entries: list[tuple[str, Any]]) -> list[list[str]]:
    rows = []
    for shown, e in entries:
        name = shown + ("/" if e.is_dir else "")
        if e.target is not None:
            name += f" -> {e.target}"
        size = "" if e.is_dir else format_bytes(e.size)
        rows.append([e.permissions(), f"{e.uid}:{e.gid}", size, _when(e.mtime), name])
    return rows


@click.group("files")
def files() -> None:
    """Browse and restore single files inside image backups (no mount needed)."""


@files.command("ls")
@click.argument("backup")
@click.argument("address", required=False, default="")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def ls(state: CliState, backup: str, address: str, as_json: bool) -> None:
    """List BACKUP's disks, a disk's volumes, or a folder at ADDRESS.

    ADDRESS is DISK, DISK:VOLUME or DISK:VOLUME/PATH; BACKUP an id, a unique id
    prefix or JOB:latest.
    """
    from ..imagefs import parse_address

    app = state.appliance()
    where = parse_address(address)
    with app.image_files(backup) as point:
        if where.disk is None:
            disks = [point.disk(str(d.index)) for d in point.disks()]
            if as_json:
                print_json([d.to_json() for d in disks])
                return
            rows = [[str(d.index), d.name, format_bytes(d.size), d.table or "-"] for d in disks]
            print_table(["disk", "name", "size", "table"], rows, right=["size"], empty="no disks")
            return
        if where.volume is None:
            volumes = point.volumes(where.disk)
            if as_json:
                print_json([v.to_json() for v in volumes])
                return
            rows = [
                [v.name, v.kind, format_bytes(v.size), v.fs or "-", v.type, v.error or ""]
                for v in volumes
            ]
            print_table(
                ["volume", "kind", "size", "fs", "type", "note"], rows, right=["size"], empty="none"
            )
            return
        entries = point.ls(where)
        if as_json:
            print_json([e.to_json() for e in entries])
            return
        print_table(
            ["mode", "owner", "size", "modified", "name"],
            _entry_rows([(e.name, e) for e in entries]),
            right=["size"],
            empty="empty folder",
        )


@files.command("find")
@click.argument("backup")
@click.argument("address")
@click.argument("pattern")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def find(state: CliState, backup: str, address: str, pattern: str, as_json: bool) -> None:
    """Find entries below ADDRESS whose name matches the glob PATTERN.

    A PATTERN with '/' is matched against the whole path. Names on FAT and NTFS
    are matched without regard to case.
    """
    app = state.appliance()
    with app.image_files(backup) as point:
        found = list(point.find(address, pattern))
        if as_json:
            print_json([{"address": str(a), **e.to_json()} for a, e in found])
            return
        print_table(
            ["mode", "owner", "size", "modified", "address"],
            _entry_rows([(str(a), e) for a, e in found]),
            right=["size"],
            empty="nothing matches",
        )


def _write_stream(chunks: Any, out: BinaryIO) -> int:
    total = 0
    for chunk in chunks:
        out.write(chunk)
        total += len(chunk)
    out.flush()
    return total


@files.command("get")
@click.argument("backup")
@click.argument("addresses", nargs=-1, required=True)
@click.option(
    "--to",
    "target",
    type=click.Path(file_okay=False, path_type=Path),
    help="Restore into this folder on the appliance (created if missing).",
)
@click.option(
    "--tar",
    "tar_out",
    metavar="FILE",
    help="Write a tar archive to FILE ('-': standard output) instead.",
)
@click.option("--zip", "zip_out", metavar="FILE", help="Write a zip archive to FILE ('-': stdout).")
@click.option("--overwrite", is_flag=True, help="Replace existing files in the --to folder.")
@pass_state
def get(
    state: CliState,
    backup: str,
    addresses: tuple[str, ...],
    target: Path | None,
    tar_out: str | None,
    zip_out: str | None,
    overwrite: bool,
) -> None:
    """Restore files or folders at ADDRESSES (DISK:VOLUME/PATH ...) of BACKUP.

    Choose one of --to FOLDER, --tar FILE or --zip FILE. Metadata (permissions,
    owner when run as root, times, links) is kept as far as the target allows;
    existing files are never replaced without --overwrite.
    """
    chosen = [o for o in (target, tar_out, zip_out) if o is not None]
    if len(chosen) != 1:
        raise click.UsageError("choose exactly one of --to FOLDER, --tar FILE, --zip FILE")
    app = state.appliance()
    if target is not None:
        report = app.restore_image_files(
            backup, list(addresses), target.expanduser().absolute(), overwrite=overwrite
        )
        click.echo(
            f"restored {report.files} file(s), {report.folders} folder(s), {report.links} "
            f"link(s), {format_bytes(report.bytes)} to {target}",
            err=True,
        )
        for line in report.skipped:
            click.echo(f"skipped: {line}", err=True)
        for line in report.warnings:
            click.echo(f"warning: {line}", err=True)
        return
    fmt, out_name = ("tar", tar_out) if tar_out is not None else ("zip", zip_out)
    assert out_name is not None
    if out_name != "-" and Path(out_name).exists() and not overwrite:
        raise click.ClickException(f"{out_name} exists (add --overwrite to replace it)")
    chunks = app.image_archive(backup, list(addresses), fmt)
    if out_name == "-":
        _write_stream(chunks, sys.stdout.buffer)
        return
    part = Path(out_name).with_name(f".{Path(out_name).name}.tapir-part")
    try:
        with open(part, "wb") as out:
            size = _write_stream(chunks, out)
        part.replace(out_name)
    finally:
        part.unlink(missing_ok=True)
    click.echo(f"wrote {format_bytes(size)} to {out_name}", err=True)
