"""Drive hardware encryption (SSC tape data encryption, security protocol 20h).

Only the pages needed to switch AES-256-GCM on and off and to read the
status are built here. The key never leaves the caller's memory except in the
SECURITY PROTOCOL OUT payload.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import cdb
from .errors import error_for
from .transport import Transport

PROTOCOL = 0x20
SET_DATA_ENCRYPTION = 0x0010
DATA_ENCRYPTION_STATUS = 0x0020

MODES = {0: "disabled", 1: "external", 2: "encrypt", 3: "decrypt", 4: "raw", 5: "mixed"}


@dataclass(frozen=True)
class EncryptionStatus:
    """The drive's data encryption status page (20h/0020h)."""

    encryption_mode: str
    decryption_mode: str
    algorithm_index: int
    key_instance: int


def build_set_encryption(key: bytes | None, algorithm_index: int = 1) -> bytes:
    """The Set Data Encryption page: encrypt+decrypt with ``key``, or all off for None."""
    if key is not None and len(key) != 32:
        raise ValueError("hardware encryption takes a 256-bit (32-byte) key")
    key = key or b""
    enc, dec = (2, 2) if key else (0, 0)
    # scope: all I_T nexus (2 << 5); CKORL: clear key on reservation loss.
    body = bytes([2 << 5, 0x01, enc, dec, algorithm_index if key else 0, 0])
    body += bytes(8) + len(key).to_bytes(2, "big") + key
    return SET_DATA_ENCRYPTION.to_bytes(2, "big") + len(body).to_bytes(2, "big") + body


def decode_status(page: bytes) -> EncryptionStatus:
    """Decode the data encryption status page; ValueError on another page."""
    if len(page) < 12 or int.from_bytes(page[0:2], "big") != DATA_ENCRYPTION_STATUS:
        raise ValueError("not a data encryption status page")
    return EncryptionStatus(
        encryption_mode=MODES.get(page[5], f"mode {page[5]}"),
        decryption_mode=MODES.get(page[6], f"mode {page[6]}"),
        algorithm_index=page[7],
        key_instance=int.from_bytes(page[8:12], "big"),
    )


def set_encryption(transport: Transport, key: bytes | None) -> None:
    """Turn drive encryption on with ``key`` (or off with None)."""
    page = build_set_encryption(key)
    res = transport.execute(
        cdb.security_protocol_out(PROTOCOL, SET_DATA_ENCRYPTION, len(page)), data_out=page
    )
    if not res.good:
        raise error_for("SECURITY PROTOCOL OUT", res.sense, res.status)


def encryption_status(transport: Transport) -> EncryptionStatus:
    """Read the data encryption status page."""
    alloc = 0x2000
    command = cdb.security_protocol_in(PROTOCOL, DATA_ENCRYPTION_STATUS, alloc)
    res = transport.execute(command, data_in=alloc)
    if not res.good:
        raise error_for("SECURITY PROTOCOL IN", res.sense, res.status)
    return decode_status(res.data)
