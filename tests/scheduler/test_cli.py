"""The command line: ``tapir settings timezone``, ``job set``, ``pool limit`` and
``tapir notify add|list|test|remove`` (run as the real console script)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tapir.appliance.cli.scheduling import parse_duration

from .servers import Hook, Mailbox

TAPIR = Path(sys.executable).parent / "tapir"
Tapir = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def tapir(tmp_path: Path) -> Tapir:
    home = tmp_path / "home"

    def run(*args: str, ok: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
        env = {**os.environ, "TAPIR_HOME": str(home)}
        env.pop("TAPIR_DATABASE_URL", None)
        proc = subprocess.run(
            [str(TAPIR), *args], capture_output=True, text=True, env=env, input=stdin, timeout=120
        )
        assert (proc.returncode == 0) == ok, (
            f"{args}: {proc.returncode}\n{proc.stdout}{proc.stderr}"
        )
        return proc

    run("init")
    return run


def test_durations() -> None:
    assert [parse_duration(t) for t in ("300", "90s", "5m", "2h", "1d")] == [
        300,
        90,
        300,
        7200,
        86400,
    ]
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration("5 minutes")


def test_time_zone_and_limits(tapir: Tapir, tmp_path: Path) -> None:
    assert tapir("settings", "timezone", "Mars/Base", ok=False).stderr.strip() == (
        "error: unknown time zone 'Mars/Base'"
    )
    tapir(
        "job",
        "create",
        "j",
        "--plugin",
        "files",
        "--pool",
        "default",
        "--path",
        str(tmp_path),
        "--schedule",
        "0 3 * * *",
    )
    tapir(
        "job",
        "create",
        "k",
        "--plugin",
        "files",
        "--pool",
        "default",
        "--path",
        str(tmp_path),
        "--schedule",
        "0 3 * * *",
        "--timezone",
        "Asia/Tokyo",
    )
    out = tapir("settings", "timezone", "Europe/Berlin").stdout
    assert out.strip() == "time zone Europe/Berlin; 1 schedule(s) moved to it"
    assert tapir("settings", "timezone").stdout.strip() == "Europe/Berlin"

    out = tapir(
        "job",
        "set",
        "j",
        "--max-concurrent",
        "2",
        "--retries",
        "3",
        "--retry-delay",
        "2m",
        "--retry-delay-max",
        "1h",
    ).stdout
    assert (
        out.strip() == "job j: at most 2 run(s) at once, 3 retries after 120s doubling up to 3600s"
    )
    err = tapir("job", "set", "j", "--retry-delay", "soon", ok=False).stderr
    assert "invalid duration 'soon'" in err
    assert "nothing to change" in tapir("job", "set", "j", ok=False).stderr
    assert tapir("pool", "limit", "default", "1").stdout.strip() == (
        "pool default: 1 concurrent run(s)"
    )
    assert "no pool named 'nope'" in tapir("pool", "limit", "nope", "1", ok=False).stderr


def test_notify_commands(
    tapir: Tapir, webhook: tuple[str, Hook], smtp: tuple[int, Mailbox, Path]
) -> None:
    url, hook = webhook
    port, box, ca = smtp
    out = tapir(
        "notify",
        "add",
        "webhook",
        "hook",
        "--url",
        url,
        "--event",
        "failure",
        "--event",
        "success",
        "--secret-stdin",
        stdin="k3y\n",
    ).stdout
    assert out.strip() == "notification target hook added (failure, success)"
    tapir(
        "notify",
        "add",
        "email",
        "mail",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--starttls",
        "--ca-file",
        str(ca),
        "--username",
        "tapir",
        "--to",
        "ops@example.com",
        "--secret-stdin",
        stdin=box.password + "\n",
    )
    err = tapir("notify", "add", "webhook", "bad", "--url", "gopher://x", ok=False).stderr
    assert "invalid webhook URL" in err

    assert tapir("notify", "test", "hook").stdout.strip() == "test notification delivered to hook"
    assert hook.requests[0][0]["x-tapir-signature"].startswith("sha256=")
    tapir("notify", "test", "mail")
    assert box.wait_for(1)[0]["Subject"].startswith("[tapir] test notification from ")

    listing = json.loads(tapir("notify", "list", "--json").stdout)
    assert [(t["name"], t["kind"], t["has_secret"]) for t in listing] == [
        ("hook", "webhook", True),
        ("mail", "email", True),
    ]
    assert box.password not in json.dumps(listing)
    assert "mail" in tapir("notify", "list").stdout

    hook.status = 503
    err = tapir("notify", "test", "hook", ok=False).stderr
    assert "delivery to hook failed" in err and "503" in err
    tapir("notify", "remove", "hook")
    assert (
        "no notification target named 'hook'" in tapir("notify", "remove", "hook", ok=False).stderr
    )
