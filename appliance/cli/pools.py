"""``tapir pool``: create, attach, list, show, change, delete and rescan pools; export and
import keys."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ..engine.rescan import RescanReport
from ..plugin_api.context import OptionSpec
from ..plugin_api.errors import TapirError
from .options import parse_options
from .output import (
    format_bytes,
    format_ratio,
    print_fields,
    print_json,
    print_table,
)
from .records import pool_listing
from .state import CliState, pass_state

COMPRESSIONS = ("zstd:3", "zstd:1", "none")


def read_passphrase(passphrase_file: Path | None, confirm: bool) -> str:
    """The key passphrase from a file (first line) or, interactively, from a prompt."""
    if passphrase_file is not None:
        text = passphrase_file.read_text(encoding="utf-8")
        passphrase = text.splitlines()[0] if text else ""
    else:
        passphrase = click.prompt(
            "Passphrase", hide_input=True, confirmation_prompt=confirm, err=True
        )
    if not passphrase:
        raise ValueError("the passphrase is empty")
    return passphrase


def _pool_specs(state: CliState, media: str) -> list[OptionSpec]:
    plugin = state.registry.media.get(media)
    return plugin.pool_options() if plugin is not None else []


@click.group()
def pool() -> None:
    """Storage pools: disk folders, tape sets..."""


@pool.command("create")
@click.argument("name")
@click.option("--media", default="disk", show_default=True, help="Media plugin of the pool.")
@click.option("--path", type=click.Path(file_okay=False, path_type=Path), help="Pool folder.")
@click.option("--encrypt/--no-encrypt", default=False, show_default=True)
@click.option("--compression", type=click.Choice(COMPRESSIONS), default="zstd:3", show_default=True)
@click.option("--retention", metavar="POLICY", help="Retention policy name.")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE", help="Media option.")
@pass_state
def pool_create(
    state: CliState,
    name: str,
    media: str,
    path: Path | None,
    encrypt: bool,
    compression: str,
    retention: str | None,
    options: tuple[str, ...],
) -> None:
    """Create the pool NAME."""
    opts = parse_options(options, _pool_specs(state, media))
    app = state.appliance()
    created = app.create_pool(
        name,
        media,
        path=path.expanduser().resolve() if path else None,
        encrypted=encrypt,
        compression=compression,
        retention=retention,
        options=opts,
    )
    where = (created.options or {}).get("path")
    click.echo(f"created pool {created.name} ({created.media}{', ' + str(where) if where else ''})")
    if encrypt:
        click.echo(
            f"the pool is encrypted: export its key now (tapir pool key export {created.name} "
            "--out FILE) and keep it apart from the appliance"
        )


@pool.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def pool_list(state: CliState, as_json: bool) -> None:
    """List pools: media, path, space used and free, dedup ratio, recovery points."""
    records = pool_listing(state.appliance())
    if as_json:
        print_json(records)
        return
    print_table(
        ["name", "media", "path", "used", "free", "dedup", "points", "encrypted"],
        [
            [
                r["name"],
                r["media"],
                r["path"],
                format_bytes(r["used"]) if not r["usage_error"] else "unavailable",
                format_bytes(r["free"]),
                format_ratio(r["dedup_ratio"]),
                r["recovery_points"],
                "yes" if r["encrypted"] else "no",
            ]
            for r in records
        ],
        right=["used", "free", "dedup", "points"],
        empty="no pools; create one with 'tapir pool create'",
    )


@pool.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def pool_show(state: CliState, name: str, as_json: bool) -> None:
    """Show one pool in detail."""
    (record,) = pool_listing(state.appliance(), name)
    if as_json:
        print_json(record)
        return
    print_fields(
        {
            "name": record["name"],
            "media": record["media"],
            "path": record["path"],
            "encrypted": "yes" if record["encrypted"] else "no",
            "compression": record["compression"],
            "retention": record["retention"],
            "used": format_bytes(record["used"]),
            "free": format_bytes(record["free"]),
            "total": format_bytes(record["total"]),
            "logical": format_bytes(record["logical"]),
            "dedup ratio": format_ratio(record["dedup_ratio"]),
            "recovery points": record["recovery_points"],
            "usage error": record["usage_error"],
            "options": ", ".join(f"{k}={v}" for k, v in sorted(record["options"].items())),
        }
    )


@pool.group("key")
def pool_key() -> None:
    """Export or import an encrypted pool's key (keep a copy off the appliance)."""


@pool_key.command("export")
@click.argument("name")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--passphrase-file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@pass_state
def key_export(state: CliState, name: str, out: Path, passphrase_file: Path | None) -> None:
    """Write pool NAME's key, sealed with a passphrase, to FILE."""
    if out.exists():
        raise ValueError(f"{out} already exists; choose another file (nothing was written)")
    passphrase = read_passphrase(passphrase_file, confirm=True)
    blob = state.appliance().export_pool_key(name, passphrase)
    # Created exclusively and private: the file unlocks the pool given the passphrase.
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(fd, "wb") as fh:
        fh.write(blob)
    click.echo(f"wrote the key of pool {name} to {out}")
    # Printed so the operator can write it on the key's envelope: tape media-set
    # labels and the vault report show the same fingerprint.
    click.echo(f"key fingerprint: {state.appliance().pool_key_fingerprint(name)}")


@pool_key.command("import")
@click.argument("name")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--passphrase-file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@pass_state
def key_import(state: CliState, name: str, file: Path, passphrase_file: Path | None) -> None:
    """Load pool NAME's key from FILE (written by 'tapir pool key export')."""
    blob = file.read_bytes()
    passphrase = read_passphrase(passphrase_file, confirm=False)
    state.appliance().import_pool_key(name, blob, passphrase)
    click.echo(f"imported the key of pool {name}")
    click.echo(f"key fingerprint: {state.appliance().pool_key_fingerprint(name)}")


@pool.command("attach")
@click.argument("name")
@click.option(
    "--path",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of an existing pool (disk media).",
)
@click.option("--media", default="disk", show_default=True, help="Media plugin of the pool.")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE", help="Media option.")
@pass_state
def pool_attach(
    state: CliState, name: str, path: Path | None, media: str, options: tuple[str, ...]
) -> None:
    """Register an existing pool's medium as NAME (nothing is added to it)."""
    opts = parse_options(options, _pool_specs(state, media))
    app = state.appliance()
    attached = app.attach_pool(
        name, media, path=path.expanduser().resolve() if path else None, options=opts
    )
    status = app.pool_medium_status(attached.name)
    where = (attached.options or {}).get("path")
    click.echo(
        f"attached pool {attached.name} ({attached.media}{', ' + str(where) if where else ''}, "
        f"{'encrypted' if status.encrypted else 'not encrypted'}): "
        f"{status.manifests} recovery point(s) on the medium"
    )
    if status.message:
        click.echo(f"warning: {status.message}", err=True)
    else:
        click.echo(f"add them to the catalog with: tapir pool rescan {attached.name}")


@pool.command("rescan")
@click.argument("name")
@click.option(
    "--prune-missing",
    is_flag=True,
    help="Delete the catalog rows of recovery points whose manifest is gone from the medium.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def pool_rescan(state: CliState, name: str, prune_missing: bool, as_json: bool) -> None:
    """Add the recovery points found on pool NAME's medium to the catalog.

    Exits 1 when a manifest could not be read, a point belongs to another pool, or
    the catalog lists points whose manifest is gone (and --prune-missing was not given).
    """
    report = state.appliance().rescan_pool(name, prune_missing=prune_missing)
    if as_json:
        print_json(report.as_dict())
    else:
        _print_rescan(report)
    if not report.ok:
        raise click.exceptions.Exit(1)


def _print_rescan(report: RescanReport) -> None:
    click.echo(
        f"pool {report.pool}: {report.manifests} manifest(s) on the medium, "
        f"{len(report.added)} recovery point(s) added, {report.already} already in the catalog"
    )
    for asset in report.assets_created:
        click.echo(f"created asset {asset}")
    if report.relinked:
        click.echo(f"linked {len(report.relinked)} existing recovery point(s) to their job")
    for job, why in sorted(report.unlinked_jobs.items()):
        click.echo(f"warning: points of job {job!r} were left without a job: {why}", err=True)
    for problem in report.unreadable:
        click.echo(f"unreadable: {problem.recovery_point}: {problem.message}", err=True)
    for problem in report.conflicts:
        click.echo(f"skipped: {problem.recovery_point}: {problem.message}", err=True)
    kept = [rp for rp in report.missing if rp not in set(report.pruned)]
    for rp_id in report.pruned:
        click.echo(f"deleted from the catalog (manifest gone): {rp_id}")
    for rp_id in kept:
        held = " (legal hold: kept)" if rp_id in report.held else ""
        click.echo(f"missing from the medium: {rp_id}{held}", err=True)
    if any(rp_id not in report.held for rp_id in kept):
        click.echo(
            "the catalog lists recovery points whose manifest is gone; "
            f"'tapir pool rescan {report.pool} --prune-missing' deletes those rows",
            err=True,
        )


@pool.command("set")
@click.argument("name")
@click.option("--retention", metavar="POLICY", help="Retention policy of the pool.")
@click.option("--no-retention", is_flag=True, help="Remove the pool's retention policy.")
@pass_state
def pool_set(state: CliState, name: str, retention: str | None, no_retention: bool) -> None:
    """Set or remove pool NAME's retention policy (``tapir pool limit`` sets its
    concurrency; media, folder, encryption and compression cannot change)."""
    if bool(retention) == no_retention:
        raise click.UsageError("give --retention POLICY or --no-retention")
    state.appliance().update_pool(name, retention=retention)
    click.echo(f"pool {name}: retention policy {retention or 'none'}")


@pool.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_state
def pool_delete(state: CliState, name: str, yes: bool) -> None:
    """Remove pool NAME from the catalog: only when it holds no recovery point and no job
    uses it. Its medium (folder, cartridges) is left as it is."""
    app = state.appliance()
    reasons = app.pool_delete_refusals(name)
    if reasons:
        raise TapirError(f"pool {name!r} cannot be deleted: {'; '.join(reasons)}")
    if not yes:
        click.confirm(f"Delete pool {name}?", abort=True, err=True)
    app.delete_pool(name)
    click.echo(f"deleted pool {name} (its medium was left as it is)")
