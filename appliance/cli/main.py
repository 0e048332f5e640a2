"""The ``tapir`` root command: global options, plugin commands and error reporting.

Operator errors (a :class:`TapirError`, an unknown name as ``KeyError``, bad input
as ``ValueError``, a file that cannot be read or written) end with one line on
stderr, ``error: ...``, and exit code 1; usage errors exit 2. Anything else is a
bug and is shown with its traceback so it can be reported.
"""

from __future__ import annotations

import atexit
import gc
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from sqlalchemy.exc import DatabaseError, OperationalError

from ...hardware import cli as hardware_cli
from ..config import load_settings
from ..plugin_api.errors import TapirError
from ..plugin_manager import PluginFailure, PluginRegistry, load_plugins
from . import (
    admin,
    backups,
    devices,
    endpoints,
    files,
    groups,
    jobs,
    maintenance,
    plugins,
    pools,
    restore,
    retention,
    runs,
    scheduling,
    serve,
    users,
)
from .state import CliState

OPERATOR_ERRORS: tuple[type[BaseException], ...] = (
    TapirError,
    KeyError,
    ValueError,
    OSError,
    OperationalError,
)

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def error_message(exc: BaseException) -> str:
    """The one line an operator sees for ``exc``."""
    if isinstance(exc, KeyError) and exc.args:
        # str(KeyError) quotes its argument; the facade's messages are sentences.
        return str(exc.args[0])
    if isinstance(exc, DatabaseError):
        # Driver messages span lines (libpq adds hints); the operator gets one.
        return "catalog: " + " ".join(str(exc.orig).split())
    return str(exc) or type(exc).__name__


def is_operator_error(exc: BaseException) -> bool:
    """True for errors the operator can act on (shown as one line, no traceback)."""
    # A plain DatabaseError is a catalog file SQLite cannot read (damaged, not a
    # database); its subclasses other than OperationalError (integrity...) are bugs.
    return isinstance(exc, OPERATOR_ERRORS) or type(exc) is DatabaseError


def _err(line: str) -> None:
    click.echo(line, err=True)


class TapirGroup(click.Group):
    """The root group: turns operator errors into ``error:`` lines and exit codes."""

    registry: PluginRegistry | None = None
    plugin_warnings: list[str]

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command line; exits the process unless ``standalone_mode`` is False."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        code = self._run(args, prog_name or "tapir", complete_var, **extra)
        sys.exit(code)

    def _run(
        self, args: Sequence[str] | None, prog_name: str, complete_var: str | None, **extra: Any
    ) -> int:
        debug = bool(os.environ.get("TAPIR_DEBUG"))
        for warning in getattr(self, "plugin_warnings", []):
            _err(f"warning: {warning}")
        try:
            rv = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as exc:
            if exc.ctx is not None:
                _err(exc.ctx.get_usage())
                _err(f"Try '{exc.ctx.command_path} --help' for help.")
            _err(f"error: {exc.format_message()}")
            return EXIT_USAGE
        except click.ClickException as exc:
            _err(f"error: {exc.format_message()}")
            return exc.exit_code
        except click.Abort:
            _err("error: aborted")
            return EXIT_ERROR
        except KeyboardInterrupt:
            _err("error: interrupted")
            return EXIT_INTERRUPTED
        except Exception as exc:
            if is_operator_error(exc):
                if debug:
                    traceback.print_exc()
                _err(f"error: {error_message(exc)}")
                return EXIT_ERROR
            traceback.print_exc()
            _err(f"error: internal error ({type(exc).__name__}: {exc}); please report it")
            return EXIT_ERROR
        return rv if isinstance(rv, int) else 0


@click.group("tapir", cls=TapirGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="TAPIR_HOME",
    show_envvar=True,
    help="Appliance state folder [default: ~/.local/share/tapir].",
)
@click.option(
    "--database-url",
    envvar="TAPIR_DATABASE_URL",
    show_envvar=True,
    help="Catalog database URL [default: SQLite in the home].",
)
@click.version_option(package_name="tapir-backup", prog_name="tapir")
@click.pass_context
def cli(ctx: click.Context, home: Path | None, database_url: str | None) -> None:
    """Tapir: back up and restore files, disks, VMs and databases to disk and tape."""
    group = ctx.command
    registry = getattr(group, "registry", None) or load_plugins()
    ctx.obj = CliState(load_settings(home, database_url), registry)


BUILTIN_COMMANDS: list[click.Command] = [
    admin.init,
    admin.db,
    serve.serve,
    plugins.plugins,
    pools.pool,
    retention.retention,
    jobs.job,
    groups.group,
    devices.device,
    endpoints.endpoint,
    runs.runs,
    runs.run,
    backups.backups,
    backups.ls,
    backups.find,
    files.files,
    restore.restore,
    maintenance.verify,
    maintenance.prune,
    maintenance.gc,
    maintenance.hold,
    maintenance.unhold,
    scheduling.settings,
    scheduling.notify,
    users.user,
]


def add_plugin_commands(group: click.Group, registry: PluginRegistry) -> list[str]:
    """Let each plugin add commands; a plugin that raises or replaces a built-in is refused.

    Returns warnings for the operator; each is also recorded in ``registry.failures``.
    """
    warnings: list[str] = []
    hook = registry.pm.hook.tapir_cli_commands
    for impl in hook.get_hookimpls():
        name = registry.pm.get_name(impl.plugin) or "?"
        before = dict(group.commands)
        args = {"cli": group, "plugin_context": _plugin_context}
        try:
            impl.function(**{k: args[k] for k in impl.argnames})
        except Exception as exc:  # a plugin's bug must not take the command line down
            group.commands = before
            warnings.append(f"plugin {name} failed to add its commands: {exc!r}")
            registry.failures.append(PluginFailure(name, "hook tapir_cli_commands", repr(exc)))
            continue
        clobbered = sorted(k for k, cmd in before.items() if group.commands.get(k) is not cmd)
        if clobbered:
            group.commands = {**group.commands, **{k: before[k] for k in clobbered}}
            message = f"plugin {name} tried to replace built-in command(s) {', '.join(clobbered)}"
            warnings.append(message + "; kept the built-in")
            registry.failures.append(PluginFailure(name, "hook tapir_cli_commands", message))
    return warnings


def _plugin_context(plugin: str) -> Any:
    # For plugin commands: the context a job would give the plugin, opened on demand.
    state = click.get_current_context().find_object(CliState)
    if state is None:
        raise click.ClickException("no appliance settings in this command's context")
    return state.appliance().plugin_context(plugin)


def _resolve_device_name(name: str) -> str:
    # --device NAME of the changer/drive commands: look the name up in the catalog.
    state = click.get_current_context().find_object(CliState)
    if state is None:
        raise KeyError(f"no device named {name!r}")
    return state.appliance().resolve_device(name)


def build_cli(registry: PluginRegistry | None = None) -> TapirGroup:
    """A fresh root group with the built-in commands and those of ``registry``'s plugins.

    Plugins are loaded from the ``tapir`` entry points when no registry is given.
    """
    registry = registry or load_plugins()
    group = TapirGroup(
        name=cli.name,
        params=list(cli.params),
        callback=cli.callback,
        help=cli.help,
        context_settings=dict(cli.context_settings),
    )
    group.registry = registry
    for command in BUILTIN_COMMANDS:
        group.add_command(command)
    # Tape hardware is driven directly (hw scan, changer, drive); it is not a plugin.
    hardware_cli.register(group, resolve_name=_resolve_device_name)
    group.plugin_warnings = add_plugin_commands(group, registry)
    return group


class _BriefFormatter(logging.Formatter):
    """Log lines without tracebacks: the engine logs failures with their traceback for
    the run log and the journal, but on a terminal the ``error:`` line says enough."""

    def formatException(self, ei: Any) -> str:
        return ""

    def formatStack(self, stack_info: str) -> str:
        return ""


def setup_logging(debug: bool) -> None:
    """Warnings and errors to stderr; everything, with tracebacks, when ``debug``."""
    handler = logging.StreamHandler()
    fmt = "%(levelname)s %(name)s: %(message)s"
    handler.setFormatter(logging.Formatter(fmt) if debug else _BriefFormatter(fmt))
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, handlers=[handler])


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: ``tapir``."""
    setup_logging(bool(os.environ.get("TAPIR_DEBUG")))
    # The interpreter's last cyclic collection walks every object left (SQLAlchemy,
    # the plugins, a backup's caches): about 0.1 s for nothing, since the process
    # ends. Frozen objects are skipped. Files, the catalog and logs are closed and
    # flushed explicitly before exit, never by the collector.
    atexit.register(gc.freeze)
    build_cli().main(argv, prog_name="tapir")
