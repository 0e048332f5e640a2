"""``tapir verify``, ``prune``, ``gc``, ``hold`` and ``unhold``: keeping pools healthy."""

from __future__ import annotations

import click

from .output import format_bytes, format_time, print_json, print_table, stderr_console
from .progress import ProgressDisplay
from .records import dataclass_record
from .state import CliState, pass_state


@click.command()
@click.argument("target", metavar="BACKUP_OR_POOL")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def verify(state: CliState, target: str, as_json: bool) -> None:
    """Read back and check every chunk of a backup or a whole pool.

    Exits 1 when problems are found, naming each chunk and the files it affects.
    """
    app = state.appliance()
    with ProgressDisplay(stderr_console(), label="verify") as show:
        report = app.verify(target, progress=show)
    if as_json:
        record = dataclass_record(report)
        record["ok"] = report.ok
        print_json(record)
    else:
        click.echo(
            f"checked {report.manifests_checked} recovery points, {report.chunks_checked} "
            f"chunks ({format_bytes(report.bytes_checked)})"
        )
        for problem in report.problems:
            chunk = problem.chunk_id.hex() if problem.chunk_id else "-"
            click.echo(f"problem: chunk {chunk}: {problem.message}")
            for rp in problem.recovery_points:
                click.echo(f"  recovery point {rp}")
            for path in problem.paths:
                click.echo(f"  file {path}")
        if report.ok:
            click.echo("ok: no problems found")
    if not report.ok:
        # The report is already printed in full; the exit code is what scripts check.
        click.echo(f"error: {len(report.problems)} problem(s) found in {target}", err=True)
        raise click.exceptions.Exit(1)


@click.command()
@click.option("--dry-run", is_flag=True, help="Show what would be deleted, delete nothing.")
@click.option("--job", metavar="NAME", help="Only this job's recovery points.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def prune(state: CliState, dry_run: bool, job: str | None, as_json: bool) -> None:
    """Delete recovery points their retention policy no longer keeps (held points stay)."""
    plan = state.appliance().prune(dry_run=dry_run, job=job)
    if as_json:
        print_json(dataclass_record(plan))
        return
    print_table(
        ["backup", "asset", "job", "created", "decision", "reasons"],
        [
            [
                d.recovery_point_id[:12],
                d.asset,
                d.job,
                format_time(d.created_at),
                "keep" if d.keep else ("would delete" if dry_run else "delete"),
                ", ".join(d.reasons),
            ]
            for d in plan.decisions
        ],
        empty="no recovery points under a retention policy",
    )
    doomed = sum(1 for d in plan.decisions if not d.keep)
    if dry_run:
        click.echo(f"dry run: {doomed} recovery point(s) would be deleted")
    else:
        click.echo(f"deleted {plan.deleted} recovery point(s); run 'tapir gc POOL' to free space")


@click.command()
@click.argument("pool")
@click.option("--dry-run", is_flag=True, help="Count what would be freed, delete nothing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def gc(state: CliState, pool: str, dry_run: bool, as_json: bool) -> None:
    """Delete chunks of POOL that no recovery point references any more."""
    report = state.appliance().gc(pool, dry_run=dry_run)
    if as_json:
        print_json(dataclass_record(report))
        return
    verb = "would free" if report.dry_run else "freed"
    click.echo(
        f"{report.chunks_unreferenced} of {report.chunks_total} chunks unreferenced; "
        f"{verb} {format_bytes(report.bytes_reclaimed)}"
    )


@click.command()
@click.argument("backup")
@pass_state
def hold(state: CliState, backup: str) -> None:
    """Put BACKUP under legal hold: prune never deletes it."""
    state.appliance().set_legal_hold(backup, True)
    click.echo(f"{backup}: legal hold set")


@click.command()
@click.argument("backup")
@pass_state
def unhold(state: CliState, backup: str) -> None:
    """Release BACKUP's legal hold: retention applies again."""
    state.appliance().set_legal_hold(backup, False)
    click.echo(f"{backup}: legal hold released")
