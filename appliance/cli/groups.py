"""``tapir group``: consistency groups of jobs frozen, marked and thawed together."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..catalog.models import ConsistencyGroup, GroupRun, RunState
from ..engine.groups import member_names
from ..plugin_api.context import OptionSpec
from .options import parse_options, split_pair
from .output import format_time, print_json, print_table
from .state import CliState, pass_state

LEVELS = ("auto", "full", "incremental", "log")


@click.group()
def group() -> None:
    """Consistency groups: one moment across several servers (see the user guide)."""


def _group_record(g: ConsistencyGroup) -> dict[str, Any]:
    return {
        "name": g.name,
        "members": member_names(g),
        "freeze_window": g.freeze_window,
        "schedule": g.schedule,
        "timezone": g.timezone,
        "next_run_at": g.next_run_at.isoformat() if g.next_run_at else None,
    }


def _run_record(r: GroupRun) -> dict[str, Any]:
    return {
        "id": r.id,
        "state": r.state,
        "trigger": r.trigger,
        "label": r.label,
        "started_at": r.started_at.isoformat(),
        "finished_at": r.finished_at.isoformat() if r.finished_at else None,
        "freeze_seconds": r.freeze_seconds,
        "error": r.error,
        "members": [
            {
                "job": m.job_name,
                "asset": m.asset_name,
                "run": m.run_id,
                "recovery_point": m.recovery_point_id,
                "mark": m.mark,
                "state": m.state,
                "error": m.error,
            }
            for m in r.members
        ],
    }


@group.command("create")
@click.argument("name")
@click.option("--member", "members", multiple=True, metavar="JOB", help="Member job (repeat).")
@click.option(
    "--freeze-window",
    default="10s",
    show_default=True,
    metavar="DURATION",
    help="Longest time from the first freeze to the last thaw (10s, 500ms, 1m).",
)
@click.option("--schedule", metavar="CRON", help="Cron expression, e.g. '0 2 * * *'.")
@click.option("--timezone", metavar="ZONE", help="Zone of the schedule [default: the appliance's].")
@pass_state
def group_create(
    state: CliState,
    name: str,
    members: tuple[str, ...],
    freeze_window: str,
    schedule: str | None,
    timezone: str | None,
) -> None:
    """Create group NAME of the --member jobs (application jobs, at least two)."""
    g = state.appliance().create_group(
        name, list(members), freeze_window=freeze_window, schedule=schedule, timezone=timezone
    )
    click.echo(f"group {g.name}: {', '.join(member_names(g))}; freeze window {g.freeze_window:g} s")


@group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def group_list(state: CliState, as_json: bool) -> None:
    """Every consistency group."""
    groups = state.appliance().groups()
    if as_json:
        print_json([_group_record(g) for g in groups])
        return
    print_table(
        ["name", "members", "freeze window", "schedule", "next run"],
        [
            [
                g.name,
                ", ".join(member_names(g)),
                f"{g.freeze_window:g} s",
                g.schedule or "-",
                format_time(g.next_run_at),
            ]
            for g in groups
        ],
    )


@group.command("show")
@click.argument("name")
@click.option("--runs", "limit", default=10, show_default=True, help="How many runs to list.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def group_show(state: CliState, name: str, limit: int, as_json: bool) -> None:
    """Group NAME, its recent runs and each member's mark and recovery point."""
    app = state.appliance()
    g = app.group(name)
    runs = app.group_runs(name, limit)
    if as_json:
        print_json({**_group_record(g), "runs": [_run_record(r) for r in runs]})
        return
    record = _group_record(g)
    click.echo(f"group {g.name}: members {', '.join(record['members'])}")
    click.echo(f"freeze window {g.freeze_window:g} s; schedule {g.schedule or 'none'}")
    for r in runs:
        took = f"{r.freeze_seconds:.3f} s frozen" if r.freeze_seconds is not None else "-"
        click.echo(f"\nrun {r.id} {r.state} ({r.trigger}) {format_time(r.started_at)}, {took}")
        if r.error:
            click.echo(f"  error: {r.error}")
        for m in r.members:
            click.echo(
                f"  {m.job_name} ({m.asset_name}): {m.state}, point {m.recovery_point_id or '-'}"
                f", mark {m.mark or '-'}"
            )


@group.command("run")
@click.argument("name")
@click.option("--level", type=click.Choice(LEVELS), default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def group_run(state: CliState, name: str, level: str, as_json: bool) -> None:
    """Freeze every member, mark the moment, thaw, and back each member up, now."""
    r = state.appliance().run_group(name, level=level)
    if as_json:
        print_json(_run_record(r))
    else:
        for m in r.members:
            click.echo(f"{m.job_name} ({m.asset_name}): point {m.recovery_point_id or '-'}")
        took = f" ({r.freeze_seconds:.3f} s frozen)" if r.freeze_seconds is not None else ""
        click.echo(f"group run {r.id} {r.state}{took}")
    if r.state != RunState.SUCCEEDED:
        raise click.ClickException(r.error or f"group run {r.id} {r.state}")


@group.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask.")
@pass_state
def group_delete(state: CliState, name: str, yes: bool) -> None:
    """Delete group NAME and its run records (the members' recovery points stay)."""
    if not yes:
        click.confirm(f"delete consistency group {name}?", abort=True)
    state.appliance().delete_group(name)
    click.echo(f"group {name} deleted")


def _restore_specs(state: CliState, plugin: str) -> list[OptionSpec]:
    source = state.registry.sources.get(plugin)
    return source.restore_options() if source is not None else []


@group.command("restore")
@click.argument("name")
@click.option("--run", "run_id", type=int, help="Group run to restore [default: newest good].")
@click.option("--to", "target", required=True, type=click.Path(path_type=Path), help="Folder.")
@click.option("--option", "pairs", multiple=True, metavar="KEY=VALUE", help="For every member.")
@click.option(
    "--member-option",
    "member_pairs",
    multiple=True,
    metavar="JOB:KEY=VALUE",
    help="A restore option for one member, e.g. db2:port=5433 (repeat).",
)
@click.option("--overwrite", type=click.Choice(["never", "older", "always"]), default="never")
@pass_state
def group_restore(
    state: CliState,
    name: str,
    run_id: int | None,
    target: Path,
    pairs: tuple[str, ...],
    member_pairs: tuple[str, ...],
    overwrite: str,
) -> None:
    """Restore every member of one group run into DIR/<job>, each to the group's mark."""
    app = state.appliance()
    plugins = {m.job.name: m.job.plugin for m in app.group(name).members}
    per_member: dict[str, list[str]] = {job: [] for job in plugins}
    for pair in member_pairs:
        job, sep, rest = pair.partition(":")
        if not sep or not job:
            raise click.UsageError(f"--member-option {pair!r} is not JOB:KEY=VALUE")
        if job not in per_member:
            raise click.UsageError(f"{job!r} is not a member of group {name}")
        split_pair(rest, "--member-option")
        per_member[job].append(rest)
    # Each member's options typed by its own plugin's declarations (a port is a number).
    member_options = {
        job: parse_options([*pairs, *extra], _restore_specs(state, plugins[job]))
        for job, extra in per_member.items()
    }
    report = app.restore_group(
        name, target, run_id=run_id, member_options=member_options, overwrite=overwrite
    )
    for m in report.members:
        if m.error:
            click.echo(f"{m.job} ({m.asset}): FAILED: {m.error}")
        else:
            click.echo(f"{m.job} ({m.asset}): point {m.point} restored to {m.target}")
    if report.failed:
        raise click.ClickException(
            f"{len(report.failed)} of {len(report.members)} members of group run "
            f"{report.group_run} could not be restored"
        )
    click.echo(f"group {name}: run {report.group_run} restored to {target}")
