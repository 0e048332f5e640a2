"""Drive key export files: a pool's drive key sealed under an operator passphrase.

A tape encrypted in the drive is unreadable without its key, and the key lives
in the appliance's secret store: losing the appliance must not lose the tapes.
The export is a small JSON document: the pool's name, the key's fingerprint,
scrypt parameters and salt, and the key sealed with AES-256-GCM under the
passphrase-derived key (the pool name, format and fingerprint bound as
associated data, so that an edited file does not open).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tapir.appliance.plugin_api import TapirError

from .drive_crypto import KEY_BYTES, fingerprint

FORMAT = "tapir-tape-drive-key"
VERSION = 1
#: scrypt cost: about 0.3 s and 128 MiB, paid once per export or import.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**17, 8, 1
MIN_PASSPHRASE = 12


class DriveKeyFileError(TapirError):
    """An export file that is not one, is damaged, or does not open with the passphrase."""


@dataclass(frozen=True)
class ExportedKey:
    """What an export file holds once opened."""

    pool: str
    key: bytes

    @property
    def fingerprint(self) -> str:
        """The key's fingerprint (as ``tapir tape drive-key show`` prints it)."""
        return fingerprint(self.key)


def _kdf(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    maxmem = 128 * r * (n + p + 2) + 1024 * 1024
    return hashlib.scrypt(passphrase.encode(), salt=salt, n=n, r=r, p=p, dklen=32, maxmem=maxmem)


def _aad(pool: str, print_: str) -> bytes:
    return f"{FORMAT}\0{VERSION}\0{pool}\0{print_}".encode()


def seal_key(pool: str, key: bytes, passphrase: str) -> bytes:
    """The export file's bytes for ``key`` of ``pool``; ValueError for a weak passphrase."""
    if len(key) != KEY_BYTES:
        raise ValueError(f"a drive key is {KEY_BYTES} bytes, not {len(key)}")
    if len(passphrase) < MIN_PASSPHRASE:
        raise ValueError(f"the passphrase must be at least {MIN_PASSPHRASE} characters long")
    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    print_ = fingerprint(key)
    wrapping = _kdf(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    sealed = AESGCM(wrapping).encrypt(nonce, key, _aad(pool, print_))
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "pool": pool,
        "fingerprint": print_,
        "kdf": {"name": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P},
        "salt": base64.b64encode(salt).decode(),
        "nonce": base64.b64encode(nonce).decode(),
        "sealed_key": base64.b64encode(sealed).decode(),
    }
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def _field(doc: dict[str, Any], name: str, kind: type) -> Any:
    value = doc.get(name)
    if not isinstance(value, kind):
        raise DriveKeyFileError(f"drive key file: field {name!r} is missing or malformed")
    return value


def open_key(data: bytes, passphrase: str) -> ExportedKey:
    """Open an export file; DriveKeyFileError for anything wrong, passphrase included."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise DriveKeyFileError("not a Tapir drive key file (not JSON)") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise DriveKeyFileError("not a Tapir drive key file")
    if doc.get("version") != VERSION:
        raise DriveKeyFileError(f"drive key file version {doc.get('version')!r} is not supported")
    pool = _field(doc, "pool", str)
    print_ = _field(doc, "fingerprint", str)
    kdf = _field(doc, "kdf", dict)
    try:
        n, r, p = int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
        salt = base64.b64decode(_field(doc, "salt", str), validate=True)
        nonce = base64.b64decode(_field(doc, "nonce", str), validate=True)
        sealed = base64.b64decode(_field(doc, "sealed_key", str), validate=True)
    except (KeyError, TypeError, ValueError):
        raise DriveKeyFileError("drive key file: malformed key derivation or key fields") from None
    if kdf.get("name") != "scrypt" or not (2**14 <= n <= 2**20 and 1 <= r <= 32 and 1 <= p <= 4):
        raise DriveKeyFileError("drive key file: unsupported key derivation parameters")
    if len(nonce) != 12:
        raise DriveKeyFileError("drive key file: malformed nonce")
    wrapping = _kdf(passphrase, salt, n, r, p)
    try:
        key = AESGCM(wrapping).decrypt(nonce, sealed, _aad(pool, print_))
    except InvalidTag:
        raise DriveKeyFileError(
            "the drive key file does not open: wrong passphrase, or the file was altered"
        ) from None
    if len(key) != KEY_BYTES or fingerprint(key) != print_:
        raise DriveKeyFileError("drive key file: the key does not match its fingerprint")
    return ExportedKey(pool=pool, key=key)
