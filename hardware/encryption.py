"""Drive hardware encryption (SSC tape data encryption, security protocol 20h).

Only the pages needed to find AES-256-GCM among the drive's algorithms, to
switch it on and off and to read the status are built and decoded here. The
key never leaves the caller's memory except in the SECURITY PROTOCOL OUT
payload.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import cdb
from .errors import error_for
from .transport import Transport

PROTOCOL = 0x20
IN_SUPPORT = 0x0000
DATA_ENCRYPTION_CAPABILITIES = 0x0010
SET_DATA_ENCRYPTION = 0x0010
DATA_ENCRYPTION_STATUS = 0x0020
#: Security algorithm code of AES-256 in GCM mode with a 16-byte tag (SSC-4 annex).
AES256_GCM = 0x00010014
#: ENCRYPT_C / DECRYPT_C: 2 = the drive does it when told so through SPOUT.
_CAPABLE = 2
#: Decryption mode MIXED (SSC DECRYPTION MODE 03h): read encrypted and plain blocks alike.
_MIXED = 3
#: CFG_P 10b: the drive is configured so that SPOUT may not set parameters.
_CFG_PREVENTED = 2

#: SSC numbers the two directions separately (data encryption status page).
ENCRYPTION_MODES = {0: "disabled", 1: "external", 2: "encrypt"}
DECRYPTION_MODES = {0: "disabled", 1: "raw", 2: "decrypt", 3: "mixed"}


@dataclass(frozen=True)
class EncryptionStatus:
    """The drive's data encryption status page (20h/0020h)."""

    encryption_mode: str
    decryption_mode: str
    algorithm_index: int
    key_instance: int


@dataclass(frozen=True)
class AlgorithmDescriptor:
    """One data encryption algorithm descriptor of the capabilities page."""

    index: int
    encrypt_capable: int
    decrypt_capable: int
    key_size: int
    security_algorithm_code: int

    @property
    def is_aes256_gcm(self) -> bool:
        """AES-256-GCM that the drive encrypts and decrypts with a key sent in SPOUT."""
        return (
            self.security_algorithm_code == AES256_GCM
            and self.key_size == 32
            and self.encrypt_capable == _CAPABLE
            and self.decrypt_capable == _CAPABLE
        )


def _page_body(page: bytes, code: int, name: str) -> bytes:
    if len(page) < 4 or int.from_bytes(page[0:2], "big") != code:
        raise ValueError(f"not a {name} page")
    length = int.from_bytes(page[2:4], "big")
    if len(page) < 4 + length:
        raise ValueError(f"{name} page truncated: {len(page) - 4} of {length} bytes")
    return page[4 : 4 + length]


def decode_in_support(page: bytes) -> list[int]:
    """The page codes of the Tape Data Encryption In Support page (20h/0000h)."""
    body = _page_body(page, IN_SUPPORT, "tape data encryption in support")
    if len(body) % 2:
        raise ValueError("tape data encryption in support page has an odd length")
    return [int.from_bytes(body[i : i + 2], "big") for i in range(0, len(body), 2)]


def decode_capabilities(page: bytes) -> list[AlgorithmDescriptor]:
    """The algorithm descriptors of the Data Encryption Capabilities page (20h/0010h).

    A drive whose configuration prevents SPOUT from setting parameters (CFG_P
    10b: a library or key manager owns encryption) offers no algorithm to us.
    """
    body = _page_body(page, DATA_ENCRYPTION_CAPABILITIES, "data encryption capabilities")
    if len(body) >= 1 and body[0] & 0x03 == _CFG_PREVENTED:
        return []
    # Bytes 4-19 of the page (EXTDECC, CFG_P, reserved) precede the descriptors.
    at, found = 16, []
    while at < len(body):
        if len(body) < at + 4:
            raise ValueError("data encryption algorithm descriptor truncated")
        length = int.from_bytes(body[at + 2 : at + 4], "big")
        desc = body[at : at + 4 + length]
        if length < 20 or len(desc) < 4 + length:
            raise ValueError(f"data encryption algorithm descriptor of {length} bytes")
        found.append(
            AlgorithmDescriptor(
                index=desc[0],
                encrypt_capable=desc[4] & 0x03,
                decrypt_capable=(desc[4] >> 2) & 0x03,
                key_size=int.from_bytes(desc[10:12], "big"),
                security_algorithm_code=int.from_bytes(desc[20:24], "big"),
            )
        )
        at += 4 + length
    return found


def build_set_encryption(
    key: bytes | None, algorithm_index: int = 1, *, read_mixed: bool = False
) -> bytes:
    """The Set Data Encryption page: encrypt+decrypt with ``key``, or all off for None.

    ``read_mixed`` decrypts in MIXED mode, so that plain blocks read back too.
    """
    if key is not None and len(key) != 32:
        raise ValueError("hardware encryption takes a 256-bit (32-byte) key")
    key = key or b""
    enc, dec = (2, _MIXED if read_mixed else 2) if key else (0, 0)
    # scope: all I_T nexus (2 << 5); CKORL: clear key on reservation loss.
    body = bytes([2 << 5, 0x01, enc, dec, algorithm_index if key else 0, 0])
    body += bytes(8) + len(key).to_bytes(2, "big") + key
    return SET_DATA_ENCRYPTION.to_bytes(2, "big") + len(body).to_bytes(2, "big") + body


def decode_status(page: bytes) -> EncryptionStatus:
    """Decode the data encryption status page; ValueError on another page."""
    if len(page) < 12 or int.from_bytes(page[0:2], "big") != DATA_ENCRYPTION_STATUS:
        raise ValueError("not a data encryption status page")
    return EncryptionStatus(
        encryption_mode=ENCRYPTION_MODES.get(page[5], f"mode {page[5]}"),
        decryption_mode=DECRYPTION_MODES.get(page[6], f"mode {page[6]}"),
        algorithm_index=page[7],
        key_instance=int.from_bytes(page[8:12], "big"),
    )


def set_encryption(
    transport: Transport, key: bytes | None, algorithm_index: int = 1, *, read_mixed: bool = False
) -> None:
    """Turn drive encryption on with ``key`` (or off with None)."""
    page = build_set_encryption(key, algorithm_index, read_mixed=read_mixed)
    res = transport.execute(
        cdb.security_protocol_out(PROTOCOL, SET_DATA_ENCRYPTION, len(page)), data_out=page
    )
    if not res.good:
        raise error_for("SECURITY PROTOCOL OUT", res.sense, res.status)


def encryption_status(transport: Transport) -> EncryptionStatus:
    """Read the data encryption status page."""
    return decode_status(_security_in(transport, DATA_ENCRYPTION_STATUS))


def _security_in(transport: Transport, page: int) -> bytes:
    alloc = 0x2000
    res = transport.execute(cdb.security_protocol_in(PROTOCOL, page, alloc), data_in=alloc)
    if not res.good:
        raise error_for("SECURITY PROTOCOL IN", res.sense, res.status)
    return res.data


def in_support(transport: Transport) -> list[int]:
    """The SPIN pages of protocol 20h the drive supports."""
    return decode_in_support(_security_in(transport, IN_SUPPORT))


def capabilities(transport: Transport) -> list[AlgorithmDescriptor]:
    """The drive's data encryption algorithms."""
    return decode_capabilities(_security_in(transport, DATA_ENCRYPTION_CAPABILITIES))
