"""The drive key: created with the pool, sealed in the secret store, exported under a
passphrase and imported on another appliance; wrong passphrases and edited files refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from tapir.appliance.config import load_settings
from tapir.appliance.engine.service import Appliance
from tapir.plugins.tape.cli import register
from tapir.plugins.tape.drive_crypto import ensure_drive_key, fingerprint, load_drive_key
from tapir.plugins.tape.drive_keys import DriveKeyFileError, open_key, seal_key

PASS = "correct horse battery staple"


def open_app(home: Path) -> Appliance:
    app = Appliance.open(load_settings(home))
    app.initialize()
    return app


@pytest.fixture
def site_a(tmp_path: Path) -> Iterator[Appliance]:
    app = open_app(tmp_path / "a")
    yield app
    app.close()


@pytest.fixture
def site_b(tmp_path: Path) -> Iterator[Appliance]:
    app = open_app(tmp_path / "b")
    yield app
    app.close()


def tapir(app: Appliance, args: list[str], input: str | None = None) -> click.testing.Result:
    cli = click.Group("tapir")
    register(cli, app.plugin_context)
    return CliRunner().invoke(cli, args, input=input)


def test_seal_and_open_round_trip_and_refusals() -> None:
    key = bytes(range(32))
    data = seal_key("vault", key, PASS)
    assert key.hex() not in data.decode()
    opened = open_key(data, PASS)
    assert (opened.pool, opened.key, opened.fingerprint) == ("vault", key, fingerprint(key))
    with pytest.raises(DriveKeyFileError, match="wrong passphrase"):
        open_key(data, PASS + "!")
    doc = json.loads(data)
    doc["pool"] = "other"  # bound as associated data: the file no longer opens
    with pytest.raises(DriveKeyFileError, match="wrong passphrase, or the file was altered"):
        open_key(json.dumps(doc).encode(), PASS)
    with pytest.raises(DriveKeyFileError, match="not JSON"):
        open_key(b"\xff\x00garbage", PASS)
    with pytest.raises(DriveKeyFileError, match="not a Tapir drive key file"):
        open_key(b'{"format": "something else"}', PASS)
    doc = json.loads(data)
    doc["kdf"]["n"] = 2  # a file must not choose a trivially cheap derivation
    with pytest.raises(DriveKeyFileError, match="unsupported key derivation"):
        open_key(json.dumps(doc).encode(), PASS)
    with pytest.raises(ValueError, match="at least 12"):
        seal_key("vault", key, "short")


def test_plugin_secrets_are_confined_to_the_plugin_s_names(site_a: Appliance) -> None:
    ctx = site_a.plugin_context("tape")
    with pytest.raises(ValueError, match=r"only store secrets named tape\.<name>"):
        ctx.store_secret("vcenter-password", "x")
    ctx.store_secret("tape.note", "kept")
    assert ctx.read_secret("tape.note") == "kept"
    assert any(e.action == "secret.set" and e.target == "tape.note" for e in site_a.audit_events())


def test_key_is_created_once_and_kept(site_a: Appliance) -> None:
    ctx = site_a.plugin_context("tape")
    assert ensure_drive_key(ctx, "p1", "off") is None
    assert load_drive_key(ctx, "p1") is None
    key = ensure_drive_key(ctx, "p1", "auto")
    assert key is not None and len(key) == 32
    assert ensure_drive_key(ctx, "p1", "required") == key
    assert load_drive_key(site_a.plugin_context("tape"), "p1") == key


def test_export_import_between_appliances(
    site_a: Appliance, site_b: Appliance, tmp_path: Path
) -> None:
    key = ensure_drive_key(site_a.plugin_context("tape"), "vault", "auto")
    assert key is not None
    out = tmp_path / "vault.key"
    res = tapir(
        site_a, ["tape", "drive-key", "export", "vault", "--out", str(out)], f"{PASS}\n{PASS}\n"
    )
    assert res.exit_code == 0, res.output
    assert fingerprint(key) in res.output and (out.stat().st_mode & 0o777) == 0o600

    # An export never overwrites a file.
    before = out.read_bytes()
    res = tapir(
        site_a, ["tape", "drive-key", "export", "vault", "--out", str(out)], f"{PASS}\n{PASS}\n"
    )
    assert res.exit_code != 0 and "exists" in str(res.exception)
    assert out.read_bytes() == before
    # A pool without a key has nothing to export.
    res = tapir(
        site_a,
        ["tape", "drive-key", "export", "nokey", "--out", str(tmp_path / "x")],
        f"{PASS}\n{PASS}\n",
    )
    assert res.exit_code != 0 and "has no drive key" in str(res.exception)

    # Disaster recovery: the new appliance gets the key; a wrong passphrase changes nothing.
    res = tapir(site_b, ["tape", "drive-key", "import", "vault", str(out)], "wrong passphrase!\n")
    assert res.exit_code != 0 and "wrong passphrase" in str(res.exception)
    assert load_drive_key(site_b.plugin_context("tape"), "vault") is None
    res = tapir(site_b, ["tape", "drive-key", "import", "other", str(out)], f"{PASS}\n")
    assert res.exit_code != 0 and "holds the drive key of pool 'vault'" in str(res.exception)
    res = tapir(site_b, ["tape", "drive-key", "import", "vault", str(out)], f"{PASS}\n")
    assert res.exit_code == 0, res.output
    assert load_drive_key(site_b.plugin_context("tape"), "vault") == key
    # The import is in the audit log (the secret store audits every plugin secret it seals).
    assert [e.action for e in site_b.audit_events() if e.target == "tape.drive-key.vault"] == [
        "secret.set"
    ]
    [imported] = [e for e in site_b.audit_events() if e.action == "tape.drive-key.import"]
    assert imported.target == "vault" and imported.details["fingerprint"] == fingerprint(key)
    # The export, on the appliance it left, too.
    [exported] = [e for e in site_a.audit_events() if e.action == "tape.drive-key.export"]
    assert exported.target == "vault" and exported.details["fingerprint"] == fingerprint(key)
    assert exported.details["file"] == str(out)
    res = tapir(site_b, ["tape", "drive-key", "show", "vault"])
    assert res.output.strip() == f"vault: drive key {fingerprint(key)}"
    res = tapir(site_b, ["tape", "drive-key", "import", "vault", str(out)], f"{PASS}\n")
    assert res.exit_code == 0 and "already in place" in res.output

    # A pool that has another key keeps it: replacing it would orphan its tapes.
    ctx_a = site_a.plugin_context("tape")
    ctx_a.store_secret("tape.drive-key.vault", bytes(32).hex())  # site A's key was replaced
    res = tapir(site_a, ["tape", "drive-key", "import", "vault", str(out)], f"{PASS}\n")
    assert res.exit_code != 0 and "already has another drive key" in str(res.exception)
    assert load_drive_key(ctx_a, "vault") == bytes(32)
