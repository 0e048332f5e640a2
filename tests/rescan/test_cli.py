"""``tapir pool attach`` and ``tapir pool rescan`` as an operator runs them after losing
an appliance: two homes, one pool folder, the exported key file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tapir.appliance.cli.main import build_cli
from tapir.appliance.plugin_manager import load_plugins

from .conftest import restored_root, tree

Tapir = Callable[..., Result]


@pytest.fixture
def tapir(monkeypatch: pytest.MonkeyPatch) -> Tapir:
    """``tapir(home, *args)``: the command line in-process, with its exit code."""
    monkeypatch.delenv("TAPIR_HOME", raising=False)
    monkeypatch.delenv("TAPIR_DATABASE_URL", raising=False)
    registry = load_plugins()

    def run(home: Path, *args: str) -> Result:
        return CliRunner().invoke(
            build_cli(registry), ["--home", str(home), *args], catch_exceptions=False
        )

    return run


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


def test_attach_import_rescan_list_restore(tapir: Tapir, source: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "home-a", tmp_path / "home-b"
    vault = tmp_path / "vault"
    passfile = tmp_path / "pass.txt"
    passfile.write_text("s3cret passphrase\n")
    key = tmp_path / "vault.key"

    ok(tapir(a, "init"))
    ok(tapir(a, "pool", "create", "vault", "--path", str(vault), "--encrypt"))
    ok(
        tapir(
            a,
            "pool",
            "key",
            "export",
            "vault",
            "--out",
            str(key),
            "--passphrase-file",
            str(passfile),
        )
    )
    job = ["job", "create", "home", "--plugin", "files", "--pool", "vault", "--path", str(source)]
    ok(tapir(a, *job))
    ok(tapir(a, "job", "run", "home"))
    (source / "docs/new.txt").write_bytes(b"added later\n")
    ok(tapir(a, "job", "run", "home"))
    before = json.loads(ok(tapir(a, "backups", "--json")).stdout)
    assert [p["level"] for p in before] == ["incremental", "full"]

    ok(tapir(b, "init"))
    attached = ok(tapir(b, "pool", "attach", "vault", "--path", str(vault)))
    assert "attached pool vault (disk, " in attached.stdout
    assert "encrypted): 2 recovery point(s) on the medium" in attached.stdout
    assert "tapir pool key import vault FILE" in attached.stderr

    refused = tapir(b, "pool", "rescan", "vault")
    assert refused.exit_code == 1
    assert "error: pool 'vault' is encrypted" in refused.stderr
    assert "tapir pool key import vault FILE" in refused.stderr

    ok(tapir(b, "pool", "key", "import", "vault", str(key), "--passphrase-file", str(passfile)))
    ok(tapir(b, *job))
    scanned = json.loads(ok(tapir(b, "pool", "rescan", "vault", "--json")).stdout)
    assert scanned["ok"] is True and scanned["manifests"] == 2
    assert sorted(scanned["added"]) == sorted(p["id"] for p in before)

    after = json.loads(ok(tapir(b, "backups", "--json")).stdout)
    keys = ("id", "asset", "job", "level", "created_at", "size")
    assert [{k: p[k] for k in keys} for p in after] == [{k: p[k] for k in keys} for p in before]

    listing = ok(tapir(b, "ls", "home:latest", "-R", "--json"))
    assert any(i["path"].endswith("docs/new.txt") for i in json.loads(listing.stdout))
    target = tmp_path / "restore"
    ok(tapir(b, "restore", "home:latest", "--to", str(target)))
    assert tree(restored_root(target, source)) == tree(source)

    again = ok(tapir(b, "pool", "rescan", "vault"))
    assert "2 manifest(s) on the medium, 0 recovery point(s) added, 2 already" in again.stdout

    # A point deleted on the medium: listed (exit 1), then deleted on request.
    full_id = before[1]["id"]
    (vault / "manifests" / full_id).unlink()
    missing = tapir(b, "pool", "rescan", "vault")
    assert missing.exit_code == 1
    assert f"missing from the medium: {full_id}" in missing.stderr
    assert "--prune-missing" in missing.stderr
    assert len(json.loads(ok(tapir(b, "backups", "--json")).stdout)) == 2
    pruned = ok(tapir(b, "pool", "rescan", "vault", "--prune-missing"))
    assert f"deleted from the catalog (manifest gone): {full_id}" in pruned.stdout
    assert [p["id"] for p in json.loads(ok(tapir(b, "backups", "--json")).stdout)] == [
        before[0]["id"]
    ]


def test_attach_errors_are_one_line(tapir: Tapir, tmp_path: Path) -> None:
    home = tmp_path / "home"
    ok(tapir(home, "init"))
    empty = tmp_path / "empty"
    empty.mkdir()
    result = tapir(home, "pool", "attach", "x", "--path", str(empty))
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot attach pool 'x': ")
    assert "is not a Tapir disk pool" in result.stderr
    assert "Traceback" not in result.stderr
    pools = json.loads(ok(tapir(home, "pool", "list", "--json")).stdout)
    assert [p["name"] for p in pools] == ["default"]

    usage = tapir(home, "pool", "attach", "x")
    assert usage.exit_code == 1
    assert "needs the pool option 'path'" in usage.stderr
