"""Secrets of the appliance: the master key, sealed credentials and user passwords.

The master key (32 random bytes in ``settings.master_key_path``, mode 0600) wraps
the pool keys and seals every credential kept in the catalog's ``secrets`` table.
Losing it makes encrypted pools unreadable without an exported pool key, so it is
never overwritten once created.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import string
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select
from sqlalchemy.orm import Session

from .catalog.models import Secret
from .config import Settings
from .plugin_api.errors import TapirError

MASTER_KEY_BYTES = 32
_SEAL_VERSION = b"\x01"
_NONCE_BYTES = 12

# scrypt parameters: ~16 MiB of memory per hash, well under a second on the appliance.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
_SCRYPT_DKLEN = 32
_SALT_BYTES = 16


class MasterKeyError(TapirError):
    """The master key is missing, unreadable or malformed."""


class SecretError(TapirError):
    """A sealed secret could not be opened (wrong master key or tampered data)."""


# Master key


def create_master_key(settings: Settings) -> bytes:
    """Create the master key file (0600) unless it exists; return the key either way.

    An existing key is never replaced: it may protect pools and secrets already.
    """
    path = settings.master_key_path
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    key = secrets.token_bytes(MASTER_KEY_BYTES)
    try:
        # O_EXCL: two concurrent `tapir init` never write two different keys.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load_master_key(settings)
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync_dir(path.parent)
    return key


def load_master_key(settings: Settings) -> bytes:
    """Read the master key; raises :class:`MasterKeyError` with the reason."""
    path = settings.master_key_path
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise MasterKeyError(
            f"master key {path} not found: run `tapir init` (or restore the key from backup)"
        ) from None
    except OSError as exc:
        raise MasterKeyError(f"cannot read master key {path}: {exc.strerror}") from None
    if len(data) != MASTER_KEY_BYTES:
        raise MasterKeyError(
            f"master key {path} is {len(data)} bytes long, expected {MASTER_KEY_BYTES}"
        )
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise MasterKeyError(f"master key {path} is readable by others (mode {mode:o}); chmod 600")
    return data


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Sealing


def seal(master_key: bytes, name: str, plaintext: bytes) -> bytes:
    """Encrypt and authenticate ``plaintext``; the name is bound as associated data,
    so a sealed value copied to another secret's row does not open."""
    nonce = secrets.token_bytes(_NONCE_BYTES)
    ct = AESGCM(master_key).encrypt(nonce, plaintext, _aad(name))
    return _SEAL_VERSION + nonce + ct


def unseal(master_key: bytes, name: str, sealed: bytes) -> bytes:
    """Open a value made by :func:`seal`; raises :class:`SecretError`."""
    if len(sealed) < 1 + _NONCE_BYTES + 16 or sealed[:1] != _SEAL_VERSION:
        raise SecretError(f"secret {name!r} is malformed")
    nonce = sealed[1 : 1 + _NONCE_BYTES]
    try:
        return AESGCM(master_key).decrypt(nonce, sealed[1 + _NONCE_BYTES :], _aad(name))
    except InvalidTag:
        raise SecretError(
            f"secret {name!r} cannot be opened: wrong master key or tampered data"
        ) from None


def _aad(name: str) -> bytes:
    return b"tapir-secret:" + name.encode()


def store_secret(session: Session, master_key: bytes, name: str, value: str) -> None:
    """Create or replace the sealed secret ``name``."""
    if not name:
        raise ValueError("a secret needs a name")
    sealed = seal(master_key, name, value.encode())
    row = session.scalar(select(Secret).where(Secret.name == name))
    if row is None:
        session.add(Secret(name=name, sealed=sealed))
    else:
        row.sealed = sealed


def read_secret(session: Session, master_key: bytes, name: str) -> str:
    """The plain text of secret ``name``; KeyError when there is none."""
    row = session.scalar(select(Secret).where(Secret.name == name))
    if row is None:
        raise KeyError(f"no secret named {name!r}")
    return unseal(master_key, name, row.sealed).decode()


# Passwords


def hash_password(password: str) -> str:
    """An encoded scrypt hash: ``scrypt$n=16384,r=8,p=1$<salt b64>$<hash b64>``."""
    if not password:
        raise ValueError("empty password")
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, _SCRYPT_DKLEN)
    return f"scrypt$n={SCRYPT_N},r={SCRYPT_R},p={SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """True when ``password`` matches; False on mismatch or a malformed hash."""
    try:
        scheme, params, salt_b64, digest_b64 = encoded.split("$")
        if scheme != "scrypt":
            return False
        p = dict(kv.split("=", 1) for kv in params.split(","))
        n, r, par = int(p["n"]), int(p["r"]), int(p["p"])
        salt = base64.b64decode(salt_b64, validate=True)
        expected = base64.b64decode(digest_b64, validate=True)
    except (ValueError, KeyError):
        return False
    if not expected or n < 2 or n > 2**20 or r > 64 or par > 16:
        return False
    actual = _scrypt(password, salt, n, r, par, len(expected))
    return hmac.compare_digest(actual, expected)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    maxmem = 128 * r * (n + p + 2) + 1024 * 1024
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=maxmem)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def generate_password(length: int = 20) -> str:
    """A random password of letters and digits (about 119 bits at the default length)."""
    if length < 12:
        raise ValueError("generated passwords are at least 12 characters long")
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))
