"""Decoding of SCSI sense data (SPC-5 fixed and descriptor formats)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class SenseKey(IntEnum):
    """SPC sense keys."""

    NO_SENSE = 0x0
    RECOVERED_ERROR = 0x1
    NOT_READY = 0x2
    MEDIUM_ERROR = 0x3
    HARDWARE_ERROR = 0x4
    ILLEGAL_REQUEST = 0x5
    UNIT_ATTENTION = 0x6
    DATA_PROTECT = 0x7
    BLANK_CHECK = 0x8
    VENDOR_SPECIFIC = 0x9
    COPY_ABORTED = 0xA
    ABORTED_COMMAND = 0xB
    RESERVED_C = 0xC
    VOLUME_OVERFLOW = 0xD
    MISCOMPARE = 0xE
    COMPLETED = 0xF


# The subset of SPC's ASC/ASCQ table a tape library actually answers with;
# unknown pairs are printed as hex rather than guessed.
_ASC_TEXT: dict[tuple[int, int], str] = {
    (0x00, 0x00): "no additional sense information",
    (0x00, 0x01): "filemark detected",
    (0x00, 0x02): "end-of-partition/medium detected",
    (0x00, 0x04): "beginning-of-partition/medium detected",
    (0x00, 0x05): "end-of-data detected",
    (0x00, 0x16): "operation in progress",
    (0x04, 0x00): "logical unit not ready, cause not reportable",
    (0x04, 0x01): "logical unit is in process of becoming ready",
    (0x04, 0x02): "logical unit not ready, initializing command required",
    (0x04, 0x03): "logical unit not ready, manual intervention required",
    (0x04, 0x12): "logical unit not ready, offline",
    (0x0C, 0x00): "write error",
    (0x11, 0x00): "unrecovered read error",
    (0x14, 0x00): "recorded entity not found",
    (0x14, 0x03): "end-of-data not found",
    (0x1A, 0x00): "parameter list length error",
    (0x20, 0x00): "invalid command operation code",
    (0x21, 0x01): "invalid element address",
    (0x24, 0x00): "invalid field in CDB",
    (0x25, 0x00): "logical unit not supported",
    (0x26, 0x00): "invalid field in parameter list",
    (0x27, 0x00): "write protected",
    (0x28, 0x00): "not ready to ready change, medium may have changed",
    (0x28, 0x01): "import or export element accessed",
    (0x29, 0x00): "power on, reset, or bus device reset occurred",
    (0x2A, 0x01): "mode parameters changed",
    (0x30, 0x00): "incompatible medium installed",
    (0x30, 0x03): "cleaning cartridge installed",
    (0x30, 0x07): "cleaning failure",
    (0x3A, 0x00): "medium not present",
    (0x3A, 0x01): "medium not present, tray closed",
    (0x3A, 0x02): "medium not present, tray open",
    (0x3B, 0x0D): "medium destination element full",
    (0x3B, 0x0E): "medium source element empty",
    (0x3B, 0x11): "medium magazine not accessible",
    (0x3B, 0x12): "medium magazine removed",
    (0x3B, 0x13): "medium magazine inserted",
    (0x44, 0x00): "internal target failure",
    (0x53, 0x00): "media load or eject failed",
    (0x53, 0x02): "medium removal prevented",
    (0x5D, 0x00): "failure prediction threshold exceeded",
    (0x74, 0x00): "security error",
}


@dataclass(frozen=True)
class Sense:
    """Decoded sense data.

    ``information`` is the INFORMATION field when the VALID bit (fixed format)
    or an information descriptor (descriptor format) says it is meaningful;
    for tape commands it is the residue in blocks or bytes.
    """

    key: SenseKey
    asc: int = 0
    ascq: int = 0
    filemark: bool = False
    eom: bool = False
    ili: bool = False
    information: int | None = None
    deferred: bool = False
    raw: bytes = b""

    @property
    def description(self) -> str:
        """The ASC/ASCQ pair in words, or in hex when it is not in the table."""
        text = _ASC_TEXT.get((self.asc, self.ascq))
        if text is None:
            return f"asc/ascq {self.asc:02x}/{self.ascq:02x}"
        return text

    def __str__(self) -> str:
        flags = [n for n, v in (("FM", self.filemark), ("EOM", self.eom), ("ILI", self.ili)) if v]
        extra = f" [{' '.join(flags)}]" if flags else ""
        return (
            f"{self.key.name.replace('_', ' ')} {self.asc:02x}/{self.ascq:02x} "
            f"({self.description}){extra}"
        )


class SenseFormatError(ValueError):
    """The bytes are not sense data this decoder understands."""


def decode_sense(raw: bytes) -> Sense:
    """Decode fixed (70h/71h) or descriptor (72h/73h) format sense data."""
    raw = bytes(raw)
    if len(raw) < 2:
        raise SenseFormatError(f"sense data too short ({len(raw)} bytes)")
    code = raw[0] & 0x7F
    if code in (0x70, 0x71):
        return _decode_fixed(raw, deferred=code == 0x71)
    if code in (0x72, 0x73):
        return _decode_descriptor(raw, deferred=code == 0x73)
    raise SenseFormatError(f"unknown sense response code {code:#04x}")


def _decode_fixed(raw: bytes, deferred: bool) -> Sense:
    padded = raw + bytes(max(0, 18 - len(raw)))
    valid = bool(raw[0] & 0x80)
    info = int.from_bytes(padded[3:7], "big", signed=True) if valid else None
    return Sense(
        key=SenseKey(padded[2] & 0x0F),
        asc=padded[12],
        ascq=padded[13],
        filemark=bool(padded[2] & 0x80),
        eom=bool(padded[2] & 0x40),
        ili=bool(padded[2] & 0x20),
        information=info,
        deferred=deferred,
        raw=raw,
    )


def _decode_descriptor(raw: bytes, deferred: bool) -> Sense:
    padded = raw + bytes(max(0, 8 - len(raw)))
    key = SenseKey(padded[1] & 0x0F)
    asc, ascq = padded[2], padded[3]
    filemark = eom = ili = False
    info: int | None = None
    end = min(len(raw), 8 + padded[7])
    pos = 8
    while pos + 2 <= end:
        dtype, dlen = raw[pos], raw[pos + 1]
        body = raw[pos + 2 : pos + 2 + dlen]
        if dtype == 0x00 and len(body) >= 10 and body[0] & 0x80:
            info = int.from_bytes(body[2:10], "big", signed=True)
        elif dtype == 0x04 and len(body) >= 2:
            # Stream commands descriptor: the same three bits as the fixed format.
            filemark = bool(body[1] & 0x80)
            eom = bool(body[1] & 0x40)
            ili = bool(body[1] & 0x20)
        pos += 2 + dlen
    return Sense(
        key=key,
        asc=asc,
        ascq=ascq,
        filemark=filemark,
        eom=eom,
        ili=ili,
        information=info,
        deferred=deferred,
        raw=raw,
    )
