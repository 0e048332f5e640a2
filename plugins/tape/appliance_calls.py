"""Running other ``tapir`` commands from a tape command, in the same process.

A plugin never imports the engine; when a tape command needs what the engine
offers operators (the recovery points of ``tapir backups --json``, the pruning
of ``tapir pool rescan --prune-missing``, attaching a pool), it runs that
command exactly as an operator would, on the same appliance and catalog, and
reads its JSON output. The engine's checks (legal holds, running backups) apply
unchanged.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from typing import Any

import click

from tapir.appliance.plugin_api import TapirError


@dataclass
class CommandResult:
    """Exit code and standard output of one ``tapir`` command."""

    args: list[str]
    code: int
    output: str

    def json(self) -> Any:
        """The output parsed as JSON; TapirError when it is not JSON."""
        try:
            return json.loads(self.output)
        except ValueError:
            raise TapirError(
                f"'tapir {' '.join(self.args)}' did not print JSON: {self.output[:200]!r}"
            ) from None


def run_tapir(args: list[str]) -> CommandResult:
    """Run ``tapir ARGS`` inside the current command; returns its exit code and output.

    Operator errors of the inner command propagate as they are (the caller's
    command then fails with the same one-line error); a non-zero ``Exit`` is
    returned as the code.
    """
    current = click.get_current_context()
    root = current.find_root()
    group = root.command
    if not isinstance(group, click.Group):
        raise TapirError("tape commands must run below the 'tapir' command group")
    buffer = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(buffer):
        name, command, rest = group.resolve_command(root, list(args))
        if command is None or name is None:
            raise TapirError(f"no command 'tapir {' '.join(args)}'")
        try:
            with command.make_context(name, rest, parent=root) as sub:
                command.invoke(sub)
        except click.exceptions.Exit as exc:
            code = exc.exit_code
    return CommandResult(list(args), code, buffer.getvalue())


def recovery_points() -> list[dict[str, Any]]:
    """Every recovery point as ``tapir backups --json`` lists it (id, asset, pool, hold...)."""
    result = run_tapir(["backups", "--json"])
    points = result.json()
    if not isinstance(points, list):
        raise TapirError("'tapir backups --json' did not print a list")
    return points


def prune_missing(pool: str) -> dict[str, Any]:
    """``tapir pool rescan POOL --prune-missing --json``: drop points gone from the medium."""
    result = run_tapir(["pool", "rescan", pool, "--prune-missing", "--json"])
    report = result.json()
    if not isinstance(report, dict):
        raise TapirError("'tapir pool rescan --json' did not print an object")
    return report
