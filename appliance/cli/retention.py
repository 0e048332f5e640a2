"""``tapir retention``: named policies deciding how long recovery points are kept."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from .output import print_json, print_table
from .records import retention_record, retention_summary
from .state import CliState, pass_state

F = TypeVar("F", bound=Callable[..., Any])


@click.group()
def retention() -> None:
    """Retention policies."""


def _count(flag: str, help: str):  # type: ignore[no-untyped-def]
    return click.option(flag, type=click.IntRange(min=0), default=None, help=help)


_RULE_FLAGS = (
    ("--keep-within", "Keep every point younger than DAYS days."),
    ("--keep-last", "Keep the N newest points."),
    ("--keep-daily", "Keep the newest point of each of the last N days."),
    ("--keep-weekly", "Keep the newest point of each of the last N weeks."),
    ("--keep-monthly", "Keep the newest point of each of the last N months."),
    ("--keep-yearly", "Keep the newest point of each of the last N years."),
)


def _rule_options(command: F) -> F:
    """The --keep-* options of ``create`` and ``set``."""
    for flag, help in reversed(_RULE_FLAGS):
        command = _count(flag, help)(command)
    return command


def _rules(counts: dict[str, int | None]) -> dict[str, int | None]:
    """The policy's rules from the --keep-* options; at least one is required."""
    rules = {("keep_within_days" if k == "keep_within" else k): v for k, v in counts.items()}
    if not any(rules.values()):
        raise click.UsageError("give at least one --keep-* rule")
    return rules


@retention.command("create")
@click.argument("name")
@_rule_options
@pass_state
def retention_create(state: CliState, name: str, **counts: int | None) -> None:
    """Create the retention policy NAME."""
    rules = _rules(counts)
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
@_rule_options
@pass_state
def retention_set(state: CliState, name: str, **counts: int | None) -> None:
    """Replace the rules of policy NAME (a rule not given is cleared)."""
    rules = _rules(counts)
    policy = state.appliance().update_retention_policy(name, **rules)
    click.echo(f"retention policy {policy.name}: {retention_summary(policy)}")


@retention.command("delete")
@click.argument("name")
@pass_state
def retention_delete(state: CliState, name: str) -> None:
    """Delete policy NAME (refused while a pool or job uses it)."""
    state.appliance().delete_retention_policy(name)
    click.echo(f"deleted retention policy {name}")
