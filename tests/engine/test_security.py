"""The master key, sealed secrets and password hashes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tapir.appliance import security
from tapir.appliance.catalog.database import Catalog
from tapir.appliance.catalog.models import Secret
from tapir.appliance.config import Settings


def _settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", database_url=f"sqlite:///{tmp_path / 'c.db'}")


def test_master_key_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    key = security.create_master_key(settings)
    assert len(key) == 32
    assert settings.master_key_path.stat().st_mode & 0o777 == 0o600
    assert settings.secrets_dir.stat().st_mode & 0o777 == 0o700
    # A second initialisation must never replace the key that protects the pools.
    assert security.create_master_key(settings) == key
    assert security.load_master_key(settings) == key


def test_missing_short_or_exposed_master_key_is_refused(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    with pytest.raises(security.MasterKeyError, match="tapir init"):
        security.load_master_key(settings)
    security.create_master_key(settings)
    os.chmod(settings.master_key_path, 0o644)
    with pytest.raises(security.MasterKeyError, match="readable by others"):
        security.load_master_key(settings)
    os.chmod(settings.master_key_path, 0o600)
    settings.master_key_path.write_bytes(b"short")
    with pytest.raises(security.MasterKeyError, match="5 bytes"):
        security.load_master_key(settings)


def test_seal_round_trip_and_tamper_detection() -> None:
    key = os.urandom(32)
    sealed = security.seal(key, "vcenter", b"s3cret")
    assert b"s3cret" not in sealed
    assert security.unseal(key, "vcenter", sealed) == b"s3cret"
    with pytest.raises(security.SecretError, match="wrong master key"):
        security.unseal(os.urandom(32), "vcenter", sealed)
    with pytest.raises(security.SecretError):
        security.unseal(key, "other-name", sealed)  # a row copied under another name
    flipped = bytearray(sealed)
    flipped[-1] ^= 1
    with pytest.raises(security.SecretError):
        security.unseal(key, "vcenter", bytes(flipped))
    with pytest.raises(security.SecretError, match="malformed"):
        security.unseal(key, "vcenter", b"\x01abc")


def test_secrets_in_the_catalog_are_sealed(tmp_path: Path) -> None:
    catalog = Catalog(f"sqlite:///{tmp_path / 'c.db'}")
    catalog.upgrade()
    key = os.urandom(32)
    with catalog.session() as s:
        security.store_secret(s, key, "db", "hunter2")
    with catalog.session() as s:
        security.store_secret(s, key, "db", "changed")
    with catalog.session() as s:
        rows = s.query(Secret).all()
        assert len(rows) == 1 and b"changed" not in rows[0].sealed
        assert security.read_secret(s, key, "db") == "changed"
        with pytest.raises(KeyError):
            security.read_secret(s, key, "nope")
    catalog.dispose()


def test_password_hash_format_and_verification() -> None:
    encoded = security.hash_password("correct horse")
    scheme, params, _salt, _digest = encoded.split("$")
    assert scheme == "scrypt" and params == "n=16384,r=8,p=1"
    assert encoded != security.hash_password("correct horse")  # per-user salt
    assert security.verify_password("correct horse", encoded)
    assert not security.verify_password("correct horsE", encoded)
    for broken in ("", "plain", "scrypt$n=2$x$y", "bcrypt$a$b$c", "scrypt$n=16384,r=8,p=1$!!$??"):
        assert not security.verify_password("x", broken)
    with pytest.raises(ValueError):
        security.hash_password("")


def test_generated_passwords_are_long_and_distinct() -> None:
    pw = {security.generate_password() for _ in range(50)}
    assert len(pw) == 50 and all(len(p) == 20 and p.isalnum() for p in pw)
    with pytest.raises(ValueError):
        security.generate_password(8)
