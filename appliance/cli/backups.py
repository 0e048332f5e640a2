"""``tapir backups``, ``tapir ls`` and ``tapir find``: what exists and what is inside."""

from __future__ import annotations

import click

from ..engine.service import Appliance
from ..plugin_api.items import ItemKind
from .output import format_bytes, format_time, print_json, print_table
from .records import item_record, recovery_point_record
from .state import CliState, pass_state


def _names(app: Appliance) -> tuple[dict[int, str], dict[int, str]]:
    return {j.id: j.name for j in app.jobs()}, {p.id: p.name for p in app.pools()}


def _mtime(ns: int) -> str:
    from datetime import UTC, datetime

    return format_time(datetime.fromtimestamp(ns / 1e9, UTC)) if ns else "-"


@click.command()
@click.option("--job", metavar="NAME", help="Only this job's recovery points.")
@click.option("--asset", metavar="NAME", help="Only this asset's recovery points.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def backups(state: CliState, job: str | None, asset: str | None, as_json: bool) -> None:
    """List recovery points (backups), newest first."""
    app = state.appliance()
    job_names, pool_names = _names(app)
    records = [
        recovery_point_record(rp, job_names, pool_names)
        for rp in app.recovery_points(asset=asset, job=job)
    ]
    if as_json:
        print_json(records)
        return
    print_table(
        ["id", "asset", "job", "level", "created", "size", "new", "hold"],
        [
            [
                r["id"][:12],
                r["asset"],
                r["job"],
                r["level"],
                format_time(r["created_at"]),
                format_bytes(r["size"]),
                format_bytes(r["new_bytes"]),
                "hold" if r["legal_hold"] else "",
            ]
            for r in records
        ],
        right=["size", "new"],
        empty="no recovery points",
    )


@click.command()
@click.argument("backup")
@click.argument("path", required=False)
@click.option("-R", "--recursive", is_flag=True, help="List the whole tree below PATH.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def ls(state: CliState, backup: str, path: str | None, recursive: bool, as_json: bool) -> None:
    """List the items of BACKUP (an id, a unique id prefix or JOB:latest) under PATH."""
    app = state.appliance()
    wanted = path.strip("/").encode("utf-8", "surrogateescape") if path else None
    items = app.list_items(backup, wanted or None, recursive=recursive)
    if as_json:
        print_json([item_record(i) for i in items])
        return
    rows = []
    for item in items:
        rec = item_record(item)
        name = rec["path"] + ("/" if item.kind == ItemKind.DIRECTORY else "")
        if rec["target"] and item.kind == ItemKind.SYMLINK:
            name += f" -> {rec['target']}"
        rows.append(
            [
                rec["mode"] or rec["kind"],
                rec["user"],
                format_bytes(rec["size"]),
                _mtime(item.mtime_ns),
                name,
            ]
        )
    print_table(["mode", "owner", "size", "modified", "path"], rows, right=["size"], empty="empty")


@click.command()
@click.argument("pattern")
@click.option("--job", metavar="NAME", help="Only this job's recovery points.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def find(state: CliState, pattern: str, job: str | None, as_json: bool) -> None:
    """Find paths matching the glob PATTERN in every recovery point."""
    app = state.appliance()
    job_names, pool_names = _names(app)
    found = [
        {
            "recovery_point": rp.id,
            "created_at": rp.created_at,
            "job": recovery_point_record(rp, job_names, pool_names)["job"],
            **item_record(item),
        }
        for rp, item in app.find(pattern, job=job)
    ]
    if as_json:
        print_json(found)
        return
    print_table(
        ["backup", "created", "size", "modified", "path"],
        [
            [
                f["recovery_point"][:12],
                format_time(f["created_at"]),
                format_bytes(f["size"]),
                _mtime(f["mtime_ns"]),
                f["path"],
            ]
            for f in found
        ],
        right=["size"],
        empty="nothing matches",
    )
