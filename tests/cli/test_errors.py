"""Operator errors: one ``error:`` line, exit 1, no traceback; usage errors exit 2;
plugin commands and broken plugins."""

from __future__ import annotations

from types import SimpleNamespace

import click

from tapir.appliance.plugin_api import PluginError, hookimpl


def _plugin_with_commands() -> object:
    @click.command("explode")
    @click.argument("kind")
    def explode(kind: str) -> None:
        """Raise the error named KIND."""
        errors = {
            "tapir": PluginError("the vCenter refused the login"),
            "key": KeyError("no job named 'nightly'"),
            "value": ValueError("invalid cron expression '* *'"),
            "os": FileNotFoundError(2, "No such file or directory", "/nope"),
            "bug": RuntimeError("boom"),
        }
        raise errors[kind]

    @click.command("hello")
    def hello() -> None:
        """Say hello."""
        click.echo("hello from a plugin")

    @hookimpl
    def tapir_cli_commands(cli: click.Group) -> None:
        cli.add_command(explode)
        cli.add_command(hello)

    return SimpleNamespace(__name__="acme", tapir_cli_commands=tapir_cli_commands)


def _broken_plugin() -> object:
    @hookimpl
    def tapir_cli_commands(cli: click.Group) -> None:
        cli.add_command(click.Command("half-added"))
        raise RuntimeError("plugin bug")

    return SimpleNamespace(__name__="broken", tapir_cli_commands=tapir_cli_commands)


def _hijacking_plugin() -> object:
    @hookimpl
    def tapir_cli_commands(cli: click.Group) -> None:
        cli.add_command(click.Command("restore", callback=lambda: click.echo("hijacked")))

    return SimpleNamespace(__name__="hijack", tapir_cli_commands=tapir_cli_commands)


def test_plugin_command_runs(invoke) -> None:
    result = invoke("hello", extra=[_plugin_with_commands()])
    assert result.exit_code == 0
    assert result.stdout == "hello from a plugin\n"


def test_operator_errors_are_one_line_exit_1(invoke) -> None:
    plugin = _plugin_with_commands()
    expected = {
        "tapir": "error: the vCenter refused the login\n",
        "key": "error: no job named 'nightly'\n",
        "value": "error: invalid cron expression '* *'\n",
        "os": "error: [Errno 2] No such file or directory: '/nope'\n",
    }
    for kind, line in expected.items():
        result = invoke("explode", kind, extra=[plugin])
        assert result.exit_code == 1, kind
        assert result.stderr == line, kind
        assert result.stdout == ""


def test_a_bug_shows_its_traceback(invoke) -> None:
    result = invoke("explode", "bug", extra=[_plugin_with_commands()])
    assert result.exit_code == 1
    assert "Traceback" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: internal error (RuntimeError: boom)")


def test_usage_errors_exit_2(invoke) -> None:
    result = invoke("pool", "create")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == "error: Missing argument 'NAME'."
    assert "Usage: tapir pool create" in result.stderr
    result = invoke("no-such-command")
    assert result.exit_code == 2
    assert "error: No such command 'no-such-command'." in result.stderr
    result = invoke("runs", "--limit", "0")
    assert result.exit_code == 2
    assert "error: Invalid value for '--limit'" in result.stderr


def test_restore_needs_exactly_one_target(invoke) -> None:
    result = invoke("restore", "abcdef")
    assert result.exit_code == 2
    assert "error: give exactly one of --to DIR and --in-place" in result.stderr
    result = invoke("restore", "abcdef", "--to", "/tmp/x", "--in-place")
    assert result.exit_code == 2


def test_broken_plugin_is_reported_and_the_cli_still_works(invoke) -> None:
    result = invoke("hello", extra=[_broken_plugin(), _plugin_with_commands()])
    assert result.exit_code == 0
    assert result.stdout == "hello from a plugin\n"
    assert "warning: plugin broken failed to add its commands: RuntimeError('plugin bug')" in (
        result.stderr
    )
    # What it added before raising was taken back.
    assert invoke("half-added", extra=[_broken_plugin()]).exit_code == 2


def test_plugin_cannot_replace_a_builtin(invoke) -> None:
    result = invoke("restore", "--help", extra=[_hijacking_plugin()])
    assert result.exit_code == 0
    assert "--in-place" in result.stdout
    assert "tried to replace built-in command(s) restore" in result.stderr


def test_plugins_listing_reports_hook_failures(invoke) -> None:
    import json

    result = invoke("plugins", "--json", extra=[_broken_plugin(), _plugin_with_commands()])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    names = [p["name"] for p in data["plugins"]]
    assert "acme" in names and "broken" in names
    acme = next(p for p in data["plugins"] if p["name"] == "acme")
    assert acme["hooks"] == ["tapir_cli_commands"]
    assert set(acme) == {"name", "version", "distribution", "module", "hooks", "roles"}
    failure = next(f for f in data["failures"] if f["name"] == "broken")
    assert failure["stage"] == "hook tapir_cli_commands"
    assert "plugin bug" in failure["error"]
