"""Fixtures: the tape fixtures of tests/tape (a real tgt library, an appliance) and a
transport double that answers SECURITY PROTOCOL IN/OUT like an encryption-capable
LTO drive, passing every other command to the real tgt drive.

The double decodes the pages it receives from the byte layouts of SSC-4
("Tape Data Encryption security protocol": Set Data Encryption page) on its own,
so that the code under test is checked against the specification, not against
itself.

Like a real drive it encrypts what it writes while it holds a key: the block
goes to tgt as AES-CTR ciphertext (same length), and the library-wide
:class:`Media` remembers which blocks are encrypted under which key (a real
drive records that in the block itself). Reading such a block back needs the
same key in the drive: without a key the double answers DATA PROTECT, UNABLE
TO DECRYPT DATA (74h/01h), with another key INCORRECT DATA ENCRYPTION KEY
(74h/03h), as SSC-4 says; a drive without the double (tgt alone) returns the
ciphertext, which no Tapir block decoder accepts.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

# The fixtures of the tape tests: a real tgt library and an appliance on it.
from tape.conftest import (  # noqa: F401
    CARTRIDGES,
    MakePool,
    add_volumes,
    app,
    home,
    make_pool,
    make_tree,
    restored,
    tree,
    vtl,
)

from tapir.hardware import drive as drive_module
from tapir.hardware.sense import decode_sense
from tapir.hardware.transport import DEFAULT_TIMEOUT, Result, Status, Transport

AES_INDEX = 0x01
WRITE_OPS = {0x0A: "write", 0x10: "filemark"}
READ_OPS = {0x08: "read"}


def capabilities_page(algorithms: list[tuple[int, int, int, int, int]], cfg_p: int = 1) -> bytes:
    """A Data Encryption Capabilities page (SSC-4, Tape Data Encryption, SPIN 20h/0010h).

    ``algorithms``: (index, ENCRYPT_C, DECRYPT_C, key size, security algorithm code).
    Page: code (2), length (2), byte 4 EXTDECC/CFG_P, bytes 5-19 reserved, then
    24-byte descriptors: index, reserved, descriptor length 0014h, byte 4
    DECRYPT_C (bits 3-2) ENCRYPT_C (bits 1-0), bytes 10-11 key size, bytes 20-23
    security algorithm code.
    """
    body = bytes([cfg_p & 0x03]) + bytes(15)
    for index, enc, dec, key_size, code in algorithms:
        desc = bytearray(24)
        desc[0] = index
        desc[2:4] = (20).to_bytes(2, "big")
        desc[4] = (dec << 2) | enc
        desc[6:8] = (32).to_bytes(2, "big")  # max unauthenticated KAD bytes
        desc[10:12] = key_size.to_bytes(2, "big")
        desc[20:24] = code.to_bytes(4, "big")
        body += bytes(desc)
    return (0x0010).to_bytes(2, "big") + len(body).to_bytes(2, "big") + body


def in_support_page(codes: list[int]) -> bytes:
    """The Tape Data Encryption In Support page (SPIN 20h/0000h): a list of page codes."""
    body = b"".join(c.to_bytes(2, "big") for c in codes)
    return (0x0000).to_bytes(2, "big") + len(body).to_bytes(2, "big") + body


@dataclass
class SetPage:
    """A Set Data Encryption page as the drive decodes it (SSC-4 field offsets)."""

    scope: int
    ckorl: bool
    encryption_mode: int
    decryption_mode: int
    algorithm_index: int
    key: bytes

    @classmethod
    def decode(cls, data: bytes) -> SetPage:
        assert data[0:2] == b"\x00\x10", "not a Set Data Encryption page"
        assert int.from_bytes(data[2:4], "big") == len(data) - 4, "page length"
        key_length = int.from_bytes(data[18:20], "big")
        assert len(data) >= 20 + key_length
        return cls(
            scope=data[4] >> 5,
            ckorl=bool(data[5] & 0x01),
            encryption_mode=data[6],
            decryption_mode=data[7],
            algorithm_index=data[8],
            key=bytes(data[20 : 20 + key_length]),
        )


@dataclass
class DriveState:
    """What the double remembers of one drive: the key held, and what happened when."""

    key: bytes | None = None
    pages: list[SetPage] = field(default_factory=list)
    #: (operation, key held at the time) of every write, filemark and read.
    data_ops: list[tuple[str, bytes | None]] = field(default_factory=list)


def _keystream_xor(key: bytes, data: bytes) -> bytes:
    # CTR is its own inverse: one function encrypts and decrypts.
    nonce = hashlib.sha256(b"tape-crypto-double" + key).digest()[:16]
    ctx = Cipher(algorithms.AES(key), modes.CTR(nonce)).encryptor()
    return ctx.update(data) + ctx.finalize()


@dataclass
class Media:
    """What the cartridges of the library hold encrypted: ciphertext digest -> key."""

    encrypted: dict[bytes, bytes] = field(default_factory=dict)
    #: Blocks written in clear and under a key, counted (tests read both).
    clear_blocks: int = 0
    encrypted_blocks: int = 0

    def seal(self, key: bytes, block: bytes) -> bytes:
        sealed = _keystream_xor(key, block)
        self.encrypted[hashlib.sha256(sealed).digest()] = key
        self.encrypted_blocks += 1
        return sealed

    def key_of(self, block: bytes) -> bytes | None:
        return self.encrypted.get(hashlib.sha256(block).digest())


class EncryptingDrive(Transport):
    """An AES-256-GCM capable drive's security protocol in front of a real tgt drive."""

    def __init__(self, inner: Transport, state: DriveState, media: Media | None = None) -> None:
        self.inner = inner
        self.state = state
        self.media = media if media is not None else Media()
        self.kind = inner.kind
        self.address = inner.address

    def execute(
        self,
        cdb: bytes,
        *,
        data_out: bytes | bytearray | memoryview | None = None,
        data_in: int = 0,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Result:
        op = cdb[0]
        if op == 0xA2 and cdb[1] == 0x20:
            page = int.from_bytes(cdb[2:4], "big")
            alloc = int.from_bytes(cdb[6:10], "big")
            if page == 0x0000:
                data = in_support_page([0x0000, 0x0001, 0x0010, 0x0020])
            elif page == 0x0010:
                # Index 0 is another algorithm, so that a hard-coded index would fail.
                data = capabilities_page(
                    [(0x00, 2, 2, 16, 0x00010010), (AES_INDEX, 2, 2, 32, 0x00010014)]
                )
            else:
                return self._illegal(cdb)
            return Result(Status.GOOD, data=data[:alloc], cdb=cdb)
        if op == 0xB5 and cdb[1] == 0x20:
            assert int.from_bytes(cdb[2:4], "big") == 0x0010
            assert data_out is not None
            assert int.from_bytes(cdb[6:10], "big") == len(data_out)
            page = SetPage.decode(bytes(data_out))
            if page.encryption_mode and page.algorithm_index != AES_INDEX:
                return self._illegal(cdb)
            self.state.pages.append(page)
            self.state.key = page.key if page.encryption_mode == 2 else None
            return Result(Status.GOOD, cdb=cdb)
        name = WRITE_OPS.get(op) or READ_OPS.get(op)
        if name is not None:
            self.state.data_ops.append((name, self.state.key))
        if op == 0x0A and data_out:
            data_out = self._write_data(cdb, bytes(data_out))
        res = self.inner.execute(cdb, data_out=data_out, data_in=data_in, timeout=timeout)
        if op == 0x08 and res.data:
            return self._read_data(cdb, res)
        return res

    def _write_data(self, cdb: bytes, data: bytes) -> bytes:
        count = int.from_bytes(cdb[2:5], "big")
        size = len(data) // count if cdb[1] & 0x01 and count else len(data)
        blocks = [data[at : at + size] for at in range(0, len(data), size)]
        key = self.state.key
        if key is None:
            self.media.clear_blocks += len(blocks)
            return data
        return b"".join(self.media.seal(key, block) for block in blocks)

    def _read_data(self, cdb: bytes, res: Result) -> Result:
        data = bytes(res.data)
        if res.status != Status.GOOD:
            # A short variable block (ILI): its length is what was asked less the residue.
            info = res.sense.information if res.sense is not None else None
            if info is None or info < 0:
                return res
            data = data[: int.from_bytes(cdb[2:5], "big") - info]
        key = self.media.key_of(data)
        if key is None:
            return res
        if self.state.key != key:
            # DATA PROTECT; 74h/01h UNABLE TO DECRYPT DATA, 74h/03h INCORRECT KEY.
            ascq = 0x01 if self.state.key is None else 0x03
            raw = bytes([0x70, 0, 0x07, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x74, ascq]) + bytes(4)
            return Result(Status.CHECK_CONDITION, sense=decode_sense(raw), cdb=cdb)
        plain = _keystream_xor(key, data)
        return dataclasses.replace(res, data=plain + bytes(res.data)[len(plain) :])

    @staticmethod
    def _illegal(cdb: bytes) -> Result:
        # ILLEGAL REQUEST, INVALID FIELD IN CDB (24h/00h), fixed format sense.
        raw = bytes([0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0x00]) + bytes(4)
        return Result(Status.CHECK_CONDITION, sense=decode_sense(raw), cdb=cdb)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def media() -> Media:
    """The encrypted blocks of the library's cartridges (shared by every drive)."""
    return Media()


@pytest.fixture
def capable_drives(
    monkeypatch: pytest.MonkeyPatch, media: Media
) -> Iterator[dict[str, DriveState]]:
    """Every drive opened through TapeDrive.open speaks tape data encryption; the
    states by drive address."""
    states: dict[str, DriveState] = {}
    real = drive_module.open_transport

    def wrapped(address: str) -> Transport:
        return EncryptingDrive(real(address), states.setdefault(address, DriveState()), media)

    monkeypatch.setattr(drive_module, "open_transport", wrapped)
    yield states
