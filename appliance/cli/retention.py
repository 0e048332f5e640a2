"""``tapir retention``: named policies deciding how long recovery points are kept."""

from __future__ import annotations

import click

from .output import print_json, print_table
from .records import retention_record, retention_summary
from .state import CliState, pass_state


@click.group()
def retention() -> None:
    """Retention policies."""


def _count(flag: str, help: str):  # type: ignore[no-untyped-def]
    return click.option(flag, type=click.IntRange(min=0), default=None, help=help)


@retention.command("create")
@click.argument("name")
@_count("--keep-within", "Keep every point younger than DAYS days.")
@_count("--keep-last", "Keep the N newest points.")
@_count("--keep-daily", "Keep the newest point of each of the last N days.")
@_count("--keep-weekly", "Keep the newest point of each of the last N weeks.")
@_count("--keep-monthly", "Keep the newest point of each of the last N months.")
@_count("--keep-yearly", "Keep the newest point of each of the last N years.")
@pass_state
def retention_create(
    state: CliState,
    name: str,
    keep_within: int | None,
    keep_last: int | None,
    keep_daily: int | None,
    keep_weekly: int | None,
    keep_monthly: int | None,
    keep_yearly: int | None,
) -> None:
    """Create the retention policy NAME."""
    rules = {
        "keep_within_days": keep_within,
        "keep_last": keep_last,
        "keep_daily": keep_daily,
        "keep_weekly": keep_weekly,
        "keep_monthly": keep_monthly,
        "keep_yearly": keep_yearly,
    }
    if not any(rules.values()):
        raise click.UsageError("give at least one --keep-* rule")
    policy = state.appliance().create_retention_policy(name, **rules)
    click.echo(f"created retention policy {policy.name}: {retention_summary(policy)}")


@retention.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def retention_list(state: CliState, as_json: bool) -> None:
    """List retention policies and their rules."""
    policies = state.appliance().retention_policies()
    if as_json:
        print_json([retention_record(p) for p in policies])
        return
    print_table(
        ["name", "rules"],
        [[p.name, retention_summary(p)] for p in policies],
        empty="no retention policies; create one with 'tapir retention create'",
    )


@retention.command("set")
@click.argument("name")
@_count("--keep-within", "Keep every point younger than DAYS days.")
@_count("--keep-last", "Keep the N newest points.")
@_count("--keep-daily", "Keep the newest point of each of the last N days.")
@_count("--keep-weekly", "Keep the newest point of each of the last N weeks.")
@_count("--keep-monthly", "Keep the newest point of each of the last N months.")
@_count("--keep-yearly", "Keep the newest point of each of the last N years.")
@pass_state
def retention_set(
    state: CliState,
    name: str,
    keep_within: int | None,
    keep_last: int | None,
    keep_daily: int | None,
    keep_weekly: int | None,
    keep_monthly: int | None,
    keep_yearly: int | None,
) -> None:
    """Replace the rules of policy NAME (a rule not given is cleared)."""
    rules = {
        "keep_within_days": keep_within,
        "keep_last": keep_last,
        "keep_daily": keep_daily,
        "keep_weekly": keep_weekly,
        "keep_monthly": keep_monthly,
        "keep_yearly": keep_yearly,
    }
    if not any(rules.values()):
        raise click.UsageError("give at least one --keep-* rule")
    policy = state.appliance().update_retention_policy(name, **rules)
    click.echo(f"retention policy {policy.name}: {retention_summary(policy)}")


@retention.command("delete")
@click.argument("name")
@pass_state
def retention_delete(state: CliState, name: str) -> None:
    """Delete policy NAME (refused while a pool or job uses it)."""
    state.appliance().delete_retention_policy(name)
    click.echo(f"deleted retention policy {name}")
