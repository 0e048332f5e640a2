"""The installed ``tapir`` binary, as an operator or a script uses it: real catalog,
real disk pool, real files backed up, listed, restored and verified."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("hello tapir\n")
    (src / "sub" / "big.bin").write_bytes(bytes(range(256)) * 4096)
    (src / "sub" / "notes.md").write_text("# notes\n")
    return src


def js(proc) -> object:
    return json.loads(proc.stdout)


def test_backup_list_restore_verify(tapir, home: Path, source: Path, tmp_path: Path) -> None:
    init = tapir("init")
    assert "admin password: " in init.stdout
    assert "already initialized" in tapir("init").stdout

    pool_dir = tmp_path / "vault"
    tapir("pool", "create", "vault", "--path", str(pool_dir), "--compression", "zstd:1")
    pools = {p["name"]: p for p in js(tapir("pool", "list", "--json"))}
    assert set(pools) == {"default", "vault"}
    assert pools["vault"]["path"] == str(pool_dir)
    assert pools["vault"]["compression"] == "zstd:1"
    assert js(tapir("pool", "show", "vault", "--json"))["recovery_points"] == 0

    tapir("retention", "create", "short", "--keep-last", "2")
    assert [r["keep_last"] for r in js(tapir("retention", "list", "--json"))] == [2]

    tapir(
        "job",
        "create",
        "docs",
        "--plugin",
        "files",
        "--pool",
        "vault",
        "--path",
        str(source),
        "--exclude",
        "*.md",
        "--retention",
        "short",
    )
    (job,) = js(tapir("job", "list", "--json"))
    assert job["name"] == "docs" and job["pool"] == "vault" and job["retention"] == "short"
    assert job["options"]["paths"] == [str(source)]

    run = tapir("job", "run", "docs")
    assert " succeeded: " in run.stdout
    # Off a terminal the progress is plain lines on stderr, no control sequences.
    assert "backup: " in run.stderr and "\x1b" not in run.stderr

    (latest_run,) = js(tapir("runs", "--json"))
    assert latest_run["state"] == "succeeded" and latest_run["job"] == "docs"
    shown = js(tapir("run", "show", str(latest_run["id"]), "--log", "--json"))
    assert shown["log"] and shown["state"] == "succeeded"

    (point,) = js(tapir("backups", "--json"))
    assert point["job"] == "docs" and point["level"] == "full"
    assert point["size"] >= 256 * 4096

    rel = str(source).lstrip("/")
    listing = js(tapir("ls", "docs:latest", rel, "-R", "--json"))
    paths = {item["path"] for item in listing}
    assert f"{rel}/a.txt" in paths and f"{rel}/sub/big.bin" in paths
    assert f"{rel}/sub/notes.md" not in paths  # excluded
    by_prefix = js(tapir("ls", point["id"][:8], rel, "--json"))
    assert {i["path"] for i in by_prefix} == {f"{rel}/a.txt", f"{rel}/sub"}

    found = js(tapir("find", "*/a.txt", "--json"))
    assert [(f["recovery_point"], f["path"]) for f in found] == [(point["id"], f"{rel}/a.txt")]

    target = tmp_path / "restored"
    restored = tapir("restore", "docs:latest", "--to", str(target))
    assert restored.stdout.startswith("restored ")
    assert (target / rel / "a.txt").read_text() == "hello tapir\n"
    assert (target / rel / "sub" / "big.bin").read_bytes() == bytes(range(256)) * 4096

    verify = js(tapir("verify", "docs:latest", "--json"))
    assert verify["ok"] is True and verify["problems"] == []
    assert js(tapir("verify", "vault", "--json"))["chunks_checked"] >= 1

    plan = js(tapir("prune", "--dry-run", "--json"))
    assert plan["dry_run"] is True
    assert [d["keep"] for d in plan["decisions"]] == [True]
    gc = js(tapir("gc", "vault", "--dry-run", "--json"))
    assert gc["chunks_unreferenced"] == 0

    tapir("hold", "docs:latest")
    assert js(tapir("backups", "--json"))[0]["legal_hold"] is True
    tapir("unhold", "docs:latest")
    assert js(tapir("backups", "--json"))[0]["legal_hold"] is False


def test_operator_errors_have_no_traceback(tapir, home: Path, tmp_path: Path) -> None:
    tapir("init")
    cases = [
        ("pool", "show", "nope"),
        ("job", "create", "j", "--plugin", "files", "--pool", "nope", "--path", "/etc"),
        ("job", "create", "j", "--plugin", "files", "--pool", "default", "--option", "bad"),
        ("job", "run", "nope"),
        ("ls", "nope:latest"),
        ("restore", "nope:latest", "--to", str(tmp_path / "r")),
        ("run", "show", "999"),
        ("gc", "nope"),
        ("pool", "key", "import", "default", str(tmp_path / "missing.key")),
    ]
    for args in cases:
        proc = tapir(*args, check=False)
        assert proc.returncode in (1, 2), args
        assert "Traceback" not in proc.stderr, (args, proc.stderr)
        assert proc.stderr.splitlines()[-1].startswith("error: "), (args, proc.stderr)
        assert proc.stdout == "", args
    assert tapir("job", "list", "--json").stdout.strip() == "[]"  # nothing half-created


def test_verify_names_damage_and_exits_1(tapir, home: Path, source: Path, tmp_path: Path) -> None:
    tapir("init")
    pool_dir = tmp_path / "vault"
    tapir("pool", "create", "vault", "--path", str(pool_dir), "--compression", "none")
    tapir("job", "create", "docs", "--plugin", "files", "--pool", "vault", "--path", str(source))
    tapir("job", "run", "docs")
    biggest = max((p for p in pool_dir.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(biggest.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    biggest.write_bytes(bytes(data))
    proc = tapir("verify", "docs:latest", "--json", check=False)
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["ok"] is False and report["problems"]
    assert any(p["chunk_id"] for p in report["problems"])
    assert proc.stderr.splitlines()[-1].startswith("error: ")
