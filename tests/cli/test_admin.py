"""``tapir db upgrade`` against a real SQLite catalog, in-process and as a subprocess."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def test_db_upgrade_creates_and_then_keeps_the_catalog(invoke, home: Path) -> None:
    result = invoke("db", "upgrade")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("catalog upgraded from empty to ")
    tables = {
        row[0]
        for row in sqlite3.connect(home / "catalog.db").execute(
            "SELECT name FROM sqlite_master WHERE type='table'"
        )
    }
    assert {"pools", "jobs", "runs", "recovery_points", "users"} <= tables
    again = invoke("db", "upgrade")
    assert again.exit_code == 0
    assert again.stdout.startswith("catalog is up to date (revision ")


def test_db_upgrade_honours_database_url(tapir, tmp_path: Path) -> None:
    db = tmp_path / "elsewhere" / "cat.db"
    proc = tapir("--database-url", f"sqlite:///{db}", "db", "upgrade")
    assert "catalog upgraded" in proc.stdout
    assert db.exists()


def test_unreachable_database_is_an_operator_error(tapir) -> None:
    proc = tapir(
        "--database-url", "sqlite:////proc/definitely/not/here.db", "db", "upgrade", check=False
    )
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1].startswith("error: ")
    assert "Traceback" not in proc.stderr
