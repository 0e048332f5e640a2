"""``tapir restore``: bring a recovery point (or some of its paths) back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .options import parse_options
from .output import format_bytes, stderr_console
from .progress import ProgressDisplay
from .state import CliState, pass_state

OVERWRITE = ("never", "older", "always")


def _restore_options(state: CliState, plugin: str, pairs: tuple[str, ...]) -> dict[str, Any]:
    """Typed restore options; a name the plugin does not declare is refused."""
    if not pairs:
        return {}
    source = state.registry.sources.get(plugin)
    specs = source.restore_options() if source is not None else []
    try:
        opts = parse_options(pairs, specs)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    known = {spec.name for spec in specs}
    unknown = sorted(set(opts) - known)
    if unknown:
        offered = ", ".join(sorted(known)) or "none"
        raise click.UsageError(
            f"the {plugin} plugin has no restore option {unknown[0]!r} (it has: {offered})"
        )
    return opts


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
@click.option(
    "--option",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="A restore option of the point's plugin (repeatable; see docs/plugins/).",
)
@pass_state
def restore(
    state: CliState,
    backup: str,
    paths: tuple[str, ...],
    target: Path | None,
    in_place: bool,
    overwrite: str,
    options: tuple[str, ...],
) -> None:
    """Restore BACKUP (an id, a unique id prefix or JOB:latest), or only PATHs of it.

    Exactly one of --to DIR and --in-place is required. Existing files are kept
    unless --overwrite says otherwise; every restored chunk's hash is verified.
    A plugin's own choices (a VM's new name, host, datastore...) are --option
    KEY=VALUE pairs.
    """
    if (target is None) == (not in_place):
        raise click.UsageError("give exactly one of --to DIR and --in-place")
    wanted = [p.strip("/").encode("utf-8", "surrogateescape") for p in paths] or None
    app = state.appliance()
    restore_opts = _restore_options(state, app.recovery_point(backup).plugin, options)
    with ProgressDisplay(stderr_console(), label="restore") as show:
        result = app.restore(
            backup,
            wanted,
            target=target.expanduser().resolve() if target else None,
            in_place=in_place,
            overwrite=overwrite,
            progress=show,
            options=restore_opts,
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
