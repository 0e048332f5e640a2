"""Fixtures for the command-line tests: a private home, a CliRunner, the real binary."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner, Result

from tapir.appliance.cli.main import build_cli
from tapir.appliance.plugin_manager import load_plugins

TAPIR = Path(sys.executable).parent / "tapir"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty appliance home, also exported as TAPIR_HOME."""
    path = tmp_path / "home"
    monkeypatch.setenv("TAPIR_HOME", str(path))
    monkeypatch.delenv("TAPIR_DATABASE_URL", raising=False)
    return path


@pytest.fixture
def invoke(home: Path) -> Callable[..., Result]:
    """Run the CLI in-process: ``invoke(*args, extra=[plugin modules])``."""

    def run(*args: str, extra: list[ModuleType | object] | None = None) -> Result:
        registry = load_plugins(extra=extra)
        runner = CliRunner()
        return runner.invoke(build_cli(registry), list(args), catch_exceptions=False)

    return run


@pytest.fixture
def tapir(home: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the installed ``tapir`` console script as a real subprocess."""

    def run(
        *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "TAPIR_HOME": str(home)}
        proc = subprocess.run(
            [str(TAPIR), *args], capture_output=True, text=True, env=env, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"tapir {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    return run
