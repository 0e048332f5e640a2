"""The operator's path: `tapir endpoint add --plugin mariadb`, a job, runs, a restore."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .conftest import PASSWORD, USER
from .test_pitr import restored_orders, write

TAPIR = Path(sys.executable).parent / "tapir"


def _tapir(home: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TAPIR_HOME": str(home)}
    env.pop("TAPIR_DATABASE_URL", None)
    proc = subprocess.run([str(TAPIR), *args], capture_output=True, text=True, env=env)
    if ok:
        assert proc.returncode == 0, f"tapir {args}: {proc.stdout}\n{proc.stderr}"
    return proc


def test_endpoint_job_runs_and_restore(server, tmp_path):
    home = tmp_path / "home"
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n")
    _tapir(home, "init")
    address = f"127.0.0.1:{server.port}"
    _tapir(home, "endpoint", "add", "db1", "--plugin", "mariadb", "--address", address,
           "--user", USER, "--password-file", str(secret))  # fmt: skip
    _tapir(home, "endpoint", "test", "db1")
    assert "db1" in _tapir(home, "endpoint", "discover", "db1").stdout
    _tapir(home, "job", "create", "db", "--plugin", "mariadb", "--pool", "default",
           "--endpoint", "db1")  # fmt: skip
    write(server, "one")
    _tapir(home, "job", "run", "db", "--level", "full")
    write(server, "two")
    # `tapir job run` offers no --level log yet (reported): binlog archiving is tested
    # through the engine in test_pitr.py; here an incremental restores by the CLI.
    _tapir(home, "job", "run", "db", "--level", "incremental")
    write(server, "three")

    target = tmp_path / "restored"
    _tapir(home, "restore", "db:latest", "--to", str(target))
    assert restored_orders(target, tmp_path / "r") == ["one", "two"]

    # A second restore into the same folder is refused and changes nothing.
    refused = _tapir(home, "restore", "db:latest", "--to", str(target), ok=False)
    assert refused.returncode != 0
    assert "not empty" in refused.stdout + refused.stderr
    assert restored_orders(target, tmp_path / "r2") == ["one", "two"]
