"""The command line: job rules at creation, shown and changed, the preview, the run log,
and the endpoints' discovery interval."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tapir.appliance.cli.main import build_cli
from tapir.appliance.plugin_manager import load_plugins
from tapir.plugins.disk import plugin as disk_plugin

from .conftest import PASSWORD, HvHooks, vm_meta

PROD = "/DC0/vm/prod"


def rows(output: str) -> list[str]:
    """A table's lines as single-spaced words, without the box-drawing separators."""
    return [
        " ".join(w for w in line.split() if w not in ("│", "┃")) for line in output.splitlines()
    ]


@pytest.fixture
def tapir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hv: HvHooks) -> Callable[..., Result]:
    monkeypatch.setenv("TAPIR_HOME", str(tmp_path / "clihome"))
    monkeypatch.delenv("TAPIR_DATABASE_URL", raising=False)

    def run(*args: str) -> Result:
        registry = load_plugins(extra=[hv, disk_plugin], entry_points=False)
        return CliRunner().invoke(build_cli(registry), list(args), catch_exceptions=False)

    assert run("init").exit_code == 0
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    added = run(
        "endpoint", "add", "hv1", "--plugin", "scripthv", "--address", "hv1.example",
        "--user", "u", "--password-file", str(pw), "--discovery-interval", "30m",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    return run


def test_create_show_change_preview_and_run(tapir: Callable[..., Result], hv: HvHooks) -> None:
    hv.plugin.vms = {
        "1": ("web-01", vm_meta(PROD)),
        "2": ("web-02", vm_meta(PROD, "poweredOff")),
        "3": ("db-01", vm_meta("/DC0/vm/test")),
        "4": ("tpl", vm_meta(PROD, template=True)),
    }
    created = tapir(
        "job", "create", "prod", "--plugin", "scripthv", "--pool", "default",
        "--endpoint", "hv1", "--rule", f"folder={PROD}", "--rule", "name=db-*",
        "--exclude", "power_state=poweredOff",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    # The rules are the job's selection, not also a plugin option named "include".
    [listed] = [j for j in json.loads(tapir("job", "list", "--json").stdout) if j["name"] == "prod"]
    assert "include" not in listed["options"], listed
    shown = json.loads(tapir("job", "rules", "prod", "--json").stdout)
    assert shown == {
        "job": "prod",
        "include": [f"folder={PROD}", "name=db-*"],
        "exclude": ["power_state=poweredOff"],
        "discover": True,
    }
    changed = tapir("job", "rules", "prod", "--remove", "name=db-*", "--exclude", "template=yes")
    assert changed.exit_code == 0, changed.output
    assert "exclude template=yes" in rows(changed.stdout) and "name=db-*" not in changed.stdout
    missing = tapir("job", "rules", "prod", "--remove", "name=nope")
    assert missing.exit_code == 2 and "job prod has no rule name=nope" in missing.stderr

    preview = tapir("job", "preview", "prod", "--discover")
    assert preview.exit_code == 0, preview.output
    lines = rows(preview.stdout)
    assert f"web-01 selected folder={PROD}" in lines
    assert "web-02 excluded power_state=poweredOff" in lines
    assert "tpl excluded template=yes" in lines
    assert "1 selected, 2 excluded" in lines
    assert not any("db-01" in line for line in lines)

    # folder=, power_state= and template= after the change above.
    assert "prod scripthv, 3 rules default manual - - yes" in rows(tapir("job", "list").stdout)

    ran = tapir("job", "run", "prod")
    assert ran.exit_code == 0, ran.output
    run_id = ran.stdout.split()[1]
    log = tapir("run", "show", run_id, "--log").stdout
    assert f"web-01: selected by rule folder={PROD}" in log
    assert "web-02: excluded by rule power_state=poweredOff" in log
    assert hv.plugin.backed_up == ["web-01"]


def test_bad_rules_and_path_globs(tapir: Callable[..., Result]) -> None:
    base = ["job", "create", "j", "--plugin", "scripthv", "--pool", "default", "--endpoint", "hv1"]
    bad = tapir(*base, "--rule", "colour=red")
    assert bad.exit_code == 1 and "invalid selection rule 'colour=red'" in bad.stderr
    glob = tapir(*base, "--exclude", "*.tmp")
    assert glob.exit_code == 2 and "--exclude '*.tmp' is no selection rule" in glob.stderr
    assert json.loads(tapir("job", "list", "--json").stdout) == []
    plain = tapir(*base)
    assert plain.exit_code == 0
    none = tapir("job", "rules", "j")
    assert "has no selection rules" in none.stdout
    nope = tapir("job", "preview", "j")
    assert nope.exit_code == 1 and "job 'j' has no selection rules" in nope.stderr


def test_endpoint_discovery_interval(tapir: Callable[..., Result]) -> None:
    (listed,) = json.loads(tapir("endpoint", "list", "--json").stdout)
    assert listed["discovery_interval"] == 1800 and listed["last_discovery_error"] is None
    table = tapir("endpoint", "list").stdout
    assert "30m" in table
    off = tapir("endpoint", "set", "hv1", "--discovery-interval", "off")
    assert off.exit_code == 0 and "endpoint hv1: discovered on demand only" in off.stdout
    hourly = tapir("endpoint", "set", "hv1", "--discovery-interval", "2h")
    assert "endpoint hv1: discovered every 2h" in hourly.stdout
    assert tapir("endpoint", "set", "hv1", "--discovery-interval", "0").exit_code == 0
    assert json.loads(tapir("endpoint", "list", "--json").stdout)[0]["discovery_interval"] == 0
    bad = tapir("endpoint", "set", "hv1", "--discovery-interval", "soon")
    assert bad.exit_code == 2 and "invalid interval 'soon'" in bad.stderr
    short = tapir("endpoint", "set", "hv1", "--discovery-interval", "10s")
    assert short.exit_code == 1 and "at least 60 seconds" in short.stderr
    assert tapir("endpoint", "set", "hv1").exit_code == 2
