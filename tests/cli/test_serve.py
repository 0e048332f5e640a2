"""``tapir serve`` as a real process: panel, login, a worker executing a queued run, SIGTERM."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import select
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from conftest import TAPIR


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The next stdout line of ``proc`` (fails after ``timeout`` seconds)."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "tapir serve printed nothing in time"
    return proc.stdout.readline()


def processes_in_group(pgid: int) -> list[int]:
    """Pids still alive in process group ``pgid`` (zombies excluded)."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(entry.name))
    return alive


def test_serve_panel_worker_and_clean_stop(tapir, home: Path, tmp_path: Path) -> None:
    password = re.search(r"admin password: (\S+)", tapir("init").stdout).group(1)
    src = tmp_path / "src"
    src.mkdir()
    (src / "file.txt").write_text("served\n")
    tapir("job", "create", "docs", "--plugin", "files", "--pool", "default", "--path", str(src))

    env = {**os.environ, "TAPIR_HOME": str(home)}
    proc = subprocess.Popen(
        [
            str(TAPIR),
            "serve",
            "--port",
            "0",
            "--workers",
            "1",
            "--tick-seconds",
            "1",
            "--poll-seconds",
            "0.3",
            "--stop-timeout",
            "20",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        line = read_line(proc, 30)
        match = re.search(r"web panel on (http://127\.0\.0\.1:\d+)/, scheduler, 1 worker", line)
        assert match, line
        base = match.group(1)

        with urllib.request.urlopen(f"{base}/healthz", timeout=10) as response:
            assert json.load(response) == {"catalog": "ok", "status": "ok"}

        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        try:
            opener.open(f"{base}/api/v1/runs", timeout=10)
            raise AssertionError("the API answered without a login")
        except urllib.error.HTTPError as exc:
            assert exc.code == 401
        page = opener.open(f"{base}/login", timeout=10).read().decode()
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        form = urllib.parse.urlencode(
            {"username": "admin", "password": password, "csrf_token": token, "next": ""}
        ).encode()
        first_run = opener.open(f"{base}/login", data=form, timeout=10)
        assert first_run.url.endswith("/account/password")  # the generated one must go
        token = re.search(r'name="csrf_token" value="([^"]+)"', first_run.read().decode()).group(1)
        new = "a longer password of my own"
        form = urllib.parse.urlencode(
            {"current": password, "new": new, "repeat": new, "csrf_token": token}
        ).encode()
        dashboard = opener.open(f"{base}/account/password", data=form, timeout=10).read().decode()
        assert "Runs of the last 24 hours" in dashboard and "docs" in dashboard

        queued = tapir("job", "run", "docs", "--queue").stdout
        run_id = int(re.search(r"queued run (\d+)", queued).group(1))
        deadline = time.monotonic() + 60
        state = None
        while time.monotonic() < deadline:
            runs = json.load(opener.open(f"{base}/api/v1/runs", timeout=10))
            state = next(r["state"] for r in runs if r["id"] == run_id)
            if state not in ("queued", "running"):
                break
            time.sleep(0.3)
        assert state == "succeeded"
        (run,) = [r for r in runs if r["id"] == run_id]
        assert run["worker"].endswith("#1") and run["items_done"] >= 1
        pools = json.load(opener.open(f"{base}/api/v1/pools", timeout=10))
        assert pools[0]["name"] == "default" and pools[0]["recovery_points"] == 1
        jobs = json.load(opener.open(f"{base}/api/v1/jobs", timeout=10))
        assert [j["name"] for j in jobs] == ["docs"]

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        out = proc.stdout.read()
        assert "received SIGTERM, stopping" in out and out.rstrip().endswith("stopped")
        assert "Traceback" not in proc.stderr.read()
        assert processes_in_group(proc.pid) == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_serve_without_anything_is_a_usage_error(tapir) -> None:
    proc = tapir("serve", "--no-web", "--no-scheduler", "--workers", "0", check=False)
    assert proc.returncode == 2
    assert "error: nothing to run" in proc.stderr


def test_serve_workers_only_stops_on_sigint(tapir, home: Path) -> None:
    tapir("init")
    proc = subprocess.Popen(
        [str(TAPIR), "serve", "--no-web", "--no-scheduler", "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TAPIR_HOME": str(home)},
        start_new_session=True,
    )
    try:
        assert read_line(proc, 30).strip() == "running 2 worker(s)"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert proc.stdout.read().rstrip().endswith("stopped")
        assert processes_in_group(proc.pid) == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
