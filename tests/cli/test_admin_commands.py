"""The command-line twins of the panel's administration pages: ``tapir pool set|delete``,
``tapir retention set|delete``, ``tapir job edit|disable|enable|delete`` and ``tapir user``."""

from __future__ import annotations

import json
from pathlib import Path


def test_pools_policies_and_jobs_are_changed_and_deleted(invoke, home: Path, tmp_path) -> None:
    assert invoke("init").exit_code == 0
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a\n")
    assert invoke("retention", "create", "week", "--keep-within", "7").exit_code == 0
    assert invoke("pool", "create", "spare").exit_code == 0
    result = invoke("pool", "set", "spare", "--retention", "week")
    assert result.exit_code == 0, result.output
    pools = {p["name"]: p for p in json.loads(invoke("pool", "list", "--json").stdout)}
    assert pools["spare"]["retention"] == "week"
    result = invoke("retention", "set", "week", "--keep-last", "3")
    assert result.exit_code == 0 and result.stdout.startswith("retention policy week: ")
    result = invoke("retention", "delete", "week")
    assert result.exit_code == 1 and "in use by pool spare" in result.stderr
    assert invoke("pool", "set", "spare", "--no-retention").exit_code == 0
    assert invoke("retention", "delete", "week").exit_code == 0
    create = ("job", "create", "docs", "--plugin", "files", "--pool", "spare", "--path", str(src))
    assert invoke(*create).exit_code == 0
    result = invoke("pool", "delete", "spare", "--yes")
    assert result.exit_code == 1 and "job(s) docs write to it" in result.stderr
    result = invoke("job", "edit", "docs", "--schedule", "0 3 * * *", "--timezone", "UTC")
    assert result.exit_code == 0, result.output
    jobs = json.loads(invoke("job", "list", "--json").stdout)
    assert [s["cron"] for s in jobs[0]["schedules"]] == ["0 3 * * *"]
    result = invoke("job", "edit", "docs", "--schedule", "nonsense")
    assert result.exit_code == 1 and "invalid cron" in result.stderr
    assert invoke("job", "disable", "docs").exit_code == 0
    result = invoke("job", "run", "docs")
    assert result.exit_code == 1 and "disabled" in result.stderr
    assert invoke("job", "enable", "docs").exit_code == 0
    assert invoke("job", "run", "docs").exit_code == 0
    result = invoke("job", "delete", "docs", "--yes")
    assert "its 1 recovery point(s) stay" in result.stdout
    result = invoke("pool", "delete", "spare", "--yes")
    assert result.exit_code == 1 and "holds 1 recovery point" in result.stderr


def test_users_and_the_last_admin(invoke, tmp_path: Path) -> None:
    assert invoke("init").exit_code == 0
    secret = tmp_path / "pw"
    secret.write_text("a long password for bob\n")
    result = invoke("user", "add", "bob", "--role", "operator", "--password-file", str(secret))
    assert result.stdout.strip() == "added user bob (operator)"
    users = json.loads(invoke("user", "list", "--json").stdout)
    assert [(u["username"], u["role"]) for u in users] == [("admin", "admin"), ("bob", "operator")]
    result = invoke("user", "set-role", "admin", "read-only")
    assert result.exit_code == 1 and "last admin" in result.stderr
    result = invoke("user", "delete", "admin")
    assert result.exit_code == 1 and "last admin" in result.stderr
    assert invoke("user", "set-role", "bob", "admin").exit_code == 0
    assert invoke("user", "delete", "admin").exit_code == 0
    short = tmp_path / "short"
    short.write_text("short\n")
    result = invoke("user", "add", "eve", "--password-file", str(short))
    assert result.exit_code == 1 and "at least 12 characters" in result.stderr
    users = json.loads(invoke("user", "list", "--json").stdout)
    assert [(u["username"], u["role"]) for u in users] == [("bob", "admin")]


def test_a_policy_needs_at_least_one_rule(invoke) -> None:  # type: ignore[no-untyped-def]
    assert invoke("init").exit_code == 0
    for args in (("create", "empty"), ("set", "empty")):
        result = invoke("retention", *args)
        assert result.exit_code == 2 and "give at least one --keep-* rule" in result.output
    assert invoke("retention", "create", "week", "--keep-within", "7").exit_code == 0
    assert invoke("retention", "set", "week").exit_code == 2
    shown = invoke("retention", "list", "--json").output
    assert '"keep_within_days": 7' in shown
