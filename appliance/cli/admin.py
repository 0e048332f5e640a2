"""Setting an appliance up: ``tapir init`` and ``tapir db upgrade``."""

from __future__ import annotations

import click

from ..catalog.database import Catalog
from ..catalog.migrate import current
from .state import CliState, pass_state


@click.command()
@pass_state
def init(state: CliState) -> None:
    """Create the home, catalog, master key, 'default' disk pool and 'admin' user.

    The admin password is printed once, the first time; running init again changes nothing.
    """
    app = state.appliance()
    password = app.initialize()
    click.echo(f"home: {state.settings.home}")
    if password is None:
        click.echo("already initialized; nothing changed")
        return
    click.echo("created the 'default' disk pool and the 'admin' user")
    click.echo(f"admin password: {password}")
    click.echo("(shown only this once: write it down or change it after the first login)")


@click.group()
def db() -> None:
    """Catalog database maintenance."""


@db.command("upgrade")
@pass_state
def db_upgrade(state: CliState) -> None:
    """Apply every pending catalog migration (safe to repeat)."""
    catalog = Catalog(state.settings.database_url)
    try:
        before = current(catalog.engine)
        catalog.upgrade()
        after = current(catalog.engine)
    finally:
        catalog.dispose()
    if before == after:
        click.echo(f"catalog is up to date (revision {after})")
    else:
        click.echo(f"catalog upgraded from {before or 'empty'} to {after}")
