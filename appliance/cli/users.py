"""``tapir user``: the web panel's users and their roles (the panel's Settings page too)."""

from __future__ import annotations

from pathlib import Path

import click

from ..engine.service import ROLES
from .output import format_time, print_json, print_table
from .state import CliState, pass_state

MIN_PASSWORD = 12


@click.group()
def user() -> None:
    """Web panel users and roles (admin, operator, read-only)."""


@user.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def user_list(state: CliState, as_json: bool) -> None:
    """List users and their roles."""
    users = state.appliance().users()
    records = [
        {
            "username": u.username,
            "role": u.role,
            "must_change_password": bool(u.must_change_password),
            "created_at": u.created_at,
        }
        for u in users
    ]
    if as_json:
        print_json(records)
        return
    print_table(
        ["user", "role", "created"],
        [[r["username"], r["role"], format_time(r["created_at"])] for r in records],
        empty="no users; 'tapir init' creates the admin",
    )


@user.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), default="read-only", show_default=True)
@click.option(
    "--password-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="File whose first line is the password (else it is asked for).",
)
@pass_state
def user_add(state: CliState, username: str, role: str, password_file: Path | None) -> None:
    """Add the panel user USERNAME."""
    if password_file is not None:
        text = password_file.read_text(encoding="utf-8")
        password = text.splitlines()[0] if text else ""
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"a password needs at least {MIN_PASSWORD} characters")
    state.appliance().create_user(username, password, role)
    click.echo(f"added user {username} ({role})")


@user.command("set-role")
@click.argument("username")
@click.argument("role", type=click.Choice(ROLES))
@pass_state
def user_set_role(state: CliState, username: str, role: str) -> None:
    """Give USERNAME the ROLE (the last admin keeps theirs)."""
    state.appliance().set_user_role(username, role)
    click.echo(f"{username} is now {role}")


@user.command("delete")
@click.argument("username")
@pass_state
def user_delete(state: CliState, username: str) -> None:
    """Delete USERNAME and their API tokens (never the last admin)."""
    state.appliance().delete_user(username)
    click.echo(f"deleted user {username}")
