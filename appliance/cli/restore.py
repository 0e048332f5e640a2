"""``tapir restore``: bring a recovery point (or some of its paths) back."""

from __future__ import annotations

from pathlib import Path

import click

from .output import format_bytes, stderr_console
from .progress import ProgressDisplay
from .state import CliState, pass_state

OVERWRITE = ("never", "older", "always")


@click.command()
@click.argument("backup")
@click.argument("paths", nargs=-1, metavar="[PATH]...")
@click.option(
    "--to",
    "target",
    type=click.Path(file_okay=False, path_type=Path),
    help="Restore below this folder.",
)
@click.option("--in-place", is_flag=True, help="Restore to the original location.")
@click.option(
    "--overwrite",
    type=click.Choice(OVERWRITE),
    default="never",
    show_default=True,
    help="What to do with files that exist already.",
)
@pass_state
def restore(
    state: CliState,
    backup: str,
    paths: tuple[str, ...],
    target: Path | None,
    in_place: bool,
    overwrite: str,
) -> None:
    """Restore BACKUP (an id, a unique id prefix or JOB:latest), or only PATHs of it.

    Exactly one of --to DIR and --in-place is required. Existing files are kept
    unless --overwrite says otherwise; every restored chunk's hash is verified.
    """
    if (target is None) == (not in_place):
        raise click.UsageError("give exactly one of --to DIR and --in-place")
    wanted = [p.strip("/").encode("utf-8", "surrogateescape") for p in paths] or None
    app = state.appliance()
    with ProgressDisplay(stderr_console(), label="restore") as show:
        result = app.restore(
            backup,
            wanted,
            target=target.expanduser().resolve() if target else None,
            in_place=in_place,
            overwrite=overwrite,
            progress=show,
        )
    where = "in place" if in_place else f"to {target}"
    click.echo(
        f"restored {result.items_restored} items ({format_bytes(result.bytes_restored)}) {where}"
    )
    if result.skipped:
        click.echo(f"skipped {len(result.skipped)} existing items (--overwrite {overwrite})")
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    failed = getattr(result, "failed", [])
    for line in failed:
        click.echo(f"error: not restored: {line}", err=True)
    if failed:
        click.echo(f"error: {len(failed)} item(s) could not be restored", err=True)
        raise SystemExit(1)
