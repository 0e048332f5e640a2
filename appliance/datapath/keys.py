"""Pool keys: an AES-256-GCM data key and a BLAKE3 id key, wrapped by the master key.

Two serialised forms exist (both documented in docs/format/chunks-and-manifests.md):

* the *wrapped* form, stored in the pool's ``repository`` config and protected by the
  appliance master key (AES-256-GCM);
* the *export* form, handed to an operator for disaster recovery and protected by a
  passphrase (scrypt, then AES-256-GCM).

Each starts with a version byte so the format can evolve. Whatever is wrong (a wrong
key, a wrong passphrase, a damaged blob), unwrapping raises :class:`TapirError` and
never returns keys that were not the ones stored.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ..plugin_api.errors import TapirError

KEY_LENGTH = 32
NONCE_LENGTH = 12

WRAP_VERSION = 1
_WRAP_AAD = b"tapir pool keys wrapped by master key"

EXPORT_MAGIC = b"TAPIRKEY"
EXPORT_VERSION = 1
_EXPORT_HEADER = struct.Struct(">8sBBBB16s")  # magic, version, log2(n), r, p, salt
DEFAULT_SCRYPT_LOG2_N = 17  # 128 MiB of memory, about half a second: once per export
_SALT_LENGTH = 16

_CHECK_CONTEXT = b"tapir pool key check value"


def _check_master_key(master_key: bytes) -> None:
    if not isinstance(master_key, bytes | bytearray) or len(master_key) != KEY_LENGTH:
        raise TapirError(f"the appliance master key must be {KEY_LENGTH} bytes")


@dataclass(frozen=True)
class PoolKeys:
    """The two secrets of an encrypted pool (never shown in a repr, so never logged)."""

    enc_key: bytes = field(repr=False)  # 32 bytes, AES-256-GCM
    id_key: bytes = field(
        repr=False
    )  # 32 bytes, keys BLAKE3 so chunk ids reveal nothing about content

    def __post_init__(self) -> None:
        if len(self.enc_key) != KEY_LENGTH or len(self.id_key) != KEY_LENGTH:
            raise TapirError(f"pool keys must be {KEY_LENGTH} bytes each")

    @classmethod
    def generate(cls) -> PoolKeys:
        """Two fresh random keys from the operating system's CSPRNG."""
        return cls(enc_key=os.urandom(KEY_LENGTH), id_key=os.urandom(KEY_LENGTH))

    def check_value(self) -> bytes:
        """A 16-byte fingerprint that tells whether keys belong to a pool without revealing them."""
        return blake3.blake3(_CHECK_CONTEXT + self.enc_key, key=self.id_key).digest(16)

    def fingerprint(self) -> str:
        """The keys' public fingerprint: :func:`key_fingerprint` of the check value."""
        return key_fingerprint(self.check_value())

    def wrap(self, master_key: bytes) -> bytes:
        """Encrypt the keys with the appliance master key: version, nonce, ciphertext+tag."""
        _check_master_key(master_key)
        nonce = os.urandom(NONCE_LENGTH)
        header = bytes([WRAP_VERSION])
        sealed = AESGCM(bytes(master_key)).encrypt(
            nonce, self.enc_key + self.id_key, header + _WRAP_AAD
        )
        return header + nonce + sealed

    @classmethod
    def unwrap(cls, wrapped: bytes, master_key: bytes) -> PoolKeys:
        """Reverse :meth:`wrap`; a wrong master key or a damaged blob raises TapirError."""
        _check_master_key(master_key)
        if len(wrapped) < 1 + NONCE_LENGTH + 16:
            raise TapirError("the pool's wrapped keys are truncated")
        if wrapped[0] != WRAP_VERSION:
            raise TapirError(f"unknown wrapped key format version {wrapped[0]}")
        nonce = wrapped[1 : 1 + NONCE_LENGTH]
        try:
            plain = AESGCM(bytes(master_key)).decrypt(
                nonce, wrapped[1 + NONCE_LENGTH :], wrapped[:1] + _WRAP_AAD
            )
        except InvalidTag:
            raise TapirError(
                "the appliance master key cannot unwrap this pool's keys "
                "(a different appliance's pool, or damaged key data): import the pool key"
            ) from None
        return cls._from_plain(plain)

    @classmethod
    def _from_plain(cls, plain: bytes) -> PoolKeys:
        if len(plain) != 2 * KEY_LENGTH:
            raise TapirError("unwrapped pool keys have the wrong length")
        return cls(enc_key=plain[:KEY_LENGTH], id_key=plain[KEY_LENGTH:])

    def export(self, passphrase: str, *, scrypt_log2_n: int = DEFAULT_SCRYPT_LOG2_N) -> bytes:
        """The keys protected by a passphrase (scrypt + AES-256-GCM) for disaster recovery."""
        if not passphrase:
            raise TapirError("a key export needs a non-empty passphrase")
        if not 10 <= scrypt_log2_n <= 22:
            raise TapirError("scrypt work factor out of range (2**10 .. 2**22)")
        salt = os.urandom(_SALT_LENGTH)
        r, p = 8, 1
        header = _EXPORT_HEADER.pack(EXPORT_MAGIC, EXPORT_VERSION, scrypt_log2_n, r, p, salt)
        kek = _derive(passphrase, salt, scrypt_log2_n, r, p)
        nonce = os.urandom(NONCE_LENGTH)
        sealed = AESGCM(kek).encrypt(nonce, self.enc_key + self.id_key, header)
        return header + nonce + sealed

    @classmethod
    def from_export(cls, exported: bytes, passphrase: str) -> PoolKeys:
        """Reverse :meth:`export`; a wrong passphrase or a damaged export raises TapirError."""
        size = _EXPORT_HEADER.size
        if len(exported) < size + NONCE_LENGTH + 16 or not exported.startswith(EXPORT_MAGIC):
            raise TapirError("this is not a Tapir key export")
        _magic, version, log2_n, r, p, salt = _EXPORT_HEADER.unpack_from(exported)
        if version != EXPORT_VERSION:
            raise TapirError(f"unknown key export format version {version}")
        if not (10 <= log2_n <= 22 and 1 <= r <= 32 and 1 <= p <= 16):
            raise TapirError("the key export has implausible scrypt parameters (damaged?)")
        kek = _derive(passphrase, salt, log2_n, r, p)
        nonce = exported[size : size + NONCE_LENGTH]
        try:
            plain = AESGCM(kek).decrypt(nonce, exported[size + NONCE_LENGTH :], exported[:size])
        except InvalidTag:
            raise TapirError("wrong passphrase, or the key export is damaged") from None
        return cls._from_plain(plain)


def key_fingerprint(check_value: bytes) -> str:
    """The fingerprint an operator sees: the 16-byte key check value in lowercase hex.

    The check value is a keyed one-way hash of the keys and is stored in clear in
    the repository config, so the fingerprint reveals nothing and needs no master
    key: tape media-set labels, vault reports and key exports show the same string.
    """
    if len(check_value) != 16:
        raise TapirError("a key check value is 16 bytes")
    return bytes(check_value).hex()


def _derive(passphrase: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    kdf = Scrypt(salt=salt, length=KEY_LENGTH, n=1 << log2_n, r=r, p=p)
    return kdf.derive(passphrase.encode("utf-8"))
