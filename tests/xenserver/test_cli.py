"""The operator's path: `tapir endpoint add --plugin xenserver`, test, discover, a job, a run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tapir.appliance.cli.main import build_cli
from tapir.appliance.plugin_manager import load_plugins
from tapir.plugins.disk import plugin as disk_plugin
from tapir.plugins.xenserver import plugin as xenserver_plugin

from .conftest import PASSWORD, USER, Pool


def test_cli_register_discover_and_back_up(
    pool: Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAPIR_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TAPIR_DATABASE_URL", raising=False)

    def tapir(*args: str) -> Any:
        registry = load_plugins(extra=[xenserver_plugin, disk_plugin], entry_points=False)
        return CliRunner().invoke(build_cli(registry), list(args), catch_exceptions=False)

    assert tapir("init").exit_code == 0
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    # A pool member's address: the plugin finds the master itself.
    address = f"localhost:{pool.server.port}"
    result = tapir(
        "endpoint", "add", "xen", "--plugin", "xenserver", "--address", address,
        "--user", USER, "--password-file", str(pw), "--fingerprint", pool.server.fingerprint,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert PASSWORD not in tapir("endpoint", "list", "--json").stdout
    ok = tapir("endpoint", "test", "xen")
    assert ok.exit_code == 0 and "connection ok" in ok.stdout
    found = json.loads(tapir("endpoint", "discover", "xen", "--json").stdout)
    assert sorted(found["added"]) == ["legacy01", "web01"]
    result = tapir(
        "job", "create", "vms", "--plugin", "xenserver", "--endpoint", "xen",
        "--pool", "default", "--asset", "web01",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    result = tapir("job", "run", "vms")
    assert result.exit_code == 0, result.output
    assert pool.server.xapi.bytes_exported == sum(
        len(pool.server.xapi.read_vdi(d)) for d in pool.web_disks
    )
