"""``tapir job create --copy-from``: copy jobs through the real command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TAPIR = Path(sys.executable).parent / "tapir"


@pytest.fixture
def tapir(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAPIR_")}

    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(TAPIR), "--home", str(tmp_path / "home"), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        if ok:
            assert proc.returncode == 0, proc.stderr
        return proc

    run("init")
    run("pool", "create", "offsite", "--path", str(tmp_path / "offsite"))
    return run


def test_create_list_and_run_a_copy_job(tapir, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("copied\n")
    tapir("job", "create", "web", "--plugin", "files", "--pool", "default", "--path", str(src))
    tapir("job", "run", "web")
    out = tapir(
        "job", "create", "vault", "--copy-from", "default", "--pool", "offsite",
        "--source-job", "web", "--max-age", "30", "--tier", "daily", "--schedule", "0 3 * * *",
    ).stdout  # fmt: skip
    assert "created copy job vault (default -> offsite)" in out

    listing = {j["name"]: j for j in json.loads(tapir("job", "list", "--json").stdout)}
    vault = listing["vault"]
    assert vault["kind"] == "copy" and vault["pool"] == "offsite"
    assert vault["selection"] == {
        "source_pool": "default",
        "jobs": ["web"],
        "max_age_days": 30,
        "tier": "daily",
    }
    assert [s["cron"] for s in vault["schedules"]] == ["0 3 * * *"]
    table = tapir("job", "list").stdout
    assert "copy from default, jobs web, max 30d, daily" in table

    assert "succeeded" in tapir("job", "run", "vault").stdout
    points = json.loads(tapir("backups", "--json").stdout)
    (copy,) = [p for p in points if p["job"] == "vault"]
    assert copy["pool"] == "offsite"
    runs = json.loads(tapir("runs", "--json").stdout)
    assert runs[0]["kind"] == "copy" and runs[0]["state"] == "succeeded"
    tapir("restore", copy["id"], "--to", str(tmp_path / "r"))
    assert (tmp_path / "r" / str(src).lstrip("/") / "a.txt").read_text() == "copied\n"


BAD = [
    (["--pool", "offsite"], "either --plugin"),
    (["--plugin", "files", "--copy-from", "default", "--pool", "offsite"], "either --plugin"),
    (["--copy-from", "default", "--pool", "offsite", "--path", "/srv"], "no --path"),
    (["--plugin", "files", "--pool", "offsite", "--tier", "daily"], "describe a copy job"),
    (["--copy-from", "nowhere", "--pool", "offsite"], "no pool named 'nowhere'"),
    (["--copy-from", "default", "--pool", "default"], "two different pools"),
    (["--copy-from", "default", "--pool", "offsite", "--source-job", "x"], "no job named"),
    (["--copy-from", "default", "--pool", "offsite", "--max-age", "0"], "max_age_days"),
    (["--copy-from", "default", "--pool", "offsite", "--tier", "hourly"], "hourly"),
]


def test_bad_copy_jobs_are_refused(tapir) -> None:
    for args, message in BAD:
        proc = tapir("job", "create", "c", *args, ok=False)
        assert proc.returncode != 0, args
        assert message in proc.stderr + proc.stdout, (args, proc.stderr)
    assert json.loads(tapir("job", "list", "--json").stdout) == []
