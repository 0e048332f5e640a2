"""TapeAlert flags (LOG SENSE page 2Eh) decoded to readable messages."""

from __future__ import annotations

from dataclasses import dataclass

from . import cdb
from .errors import error_for
from .transport import Transport

PAGE = 0x2E

FLAGS: dict[int, str] = {
    1: "read warning: the drive is having problems reading data",
    2: "write warning: the drive is having problems writing data",
    3: "hard error: the operation has stopped because of an error",
    4: "media: the tape is damaged or the data on it cannot be read reliably",
    5: "read failure: the tape is damaged or the drive is faulty",
    6: "write failure: the tape is from a faulty batch or the drive is faulty",
    7: "media life: the tape has reached the end of its calculated life",
    8: "not data grade: the cartridge is not data-grade",
    9: "write protect: write attempted to a write-protected cartridge",
    10: "no removal: cannot eject, the cartridge is in use (prevent removal)",
    11: "cleaning media: a cleaning cartridge is in the drive",
    12: "unsupported format: the cartridge format is not supported",
    13: "recoverable mechanical cartridge failure",
    14: "unrecoverable mechanical cartridge failure",
    15: "memory chip in cartridge failure",
    16: "forced eject: the cartridge was manually ejected while in use",
    17: "read-only format: the cartridge format is read-only in this drive",
    18: "tape directory corrupted on load",
    19: "nearing media life: the tape is nearing the end of its life",
    20: "clean now: the drive needs cleaning",
    21: "clean periodic: the drive is due for routine cleaning",
    22: "expired cleaning media: the cleaning cartridge is used up",
    23: "invalid cleaning tape: the cleaning cartridge is not valid",
    24: "retension requested",
    25: "dual-port interface error",
    26: "cooling fan failure",
    27: "power supply failure",
    28: "power consumption exceeds limits",
    29: "drive maintenance required",
    30: "hardware A: the drive has a hardware fault (reset needed)",
    31: "hardware B: the drive has a hardware fault (self-test failed)",
    32: "interface: problem with the host interface",
    33: "eject media: eject the cartridge and retry",
    34: "download fail: firmware download failed",
    35: "drive humidity out of range",
    36: "drive temperature out of range",
    37: "drive voltage out of range",
    38: "predictive failure of drive hardware",
    39: "diagnostics required",
    49: "diminished native capacity",
    50: "lost statistics",
    51: "tape directory invalid at unload",
    52: "tape system area write failure",
    53: "tape system area read failure",
    54: "no start of data: the tape is blank or damaged at the start",
    55: "loading failure",
    56: "unrecoverable unload failure",
    57: "automation interface failure",
    58: "firmware failure",
    59: "WORM medium integrity check failed",
    60: "WORM medium overwrite attempted",
}

CLEANING_FLAGS = frozenset({20, 21})


@dataclass(frozen=True)
class TapeAlert:
    """One active TapeAlert flag."""

    flag: int
    message: str


def decode_tapealert(page: bytes) -> list[TapeAlert]:
    """Active flags from LOG SENSE page 2Eh data; ValueError on another page."""
    if len(page) < 4 or page[0] & 0x3F != PAGE:
        raise ValueError("not a TapeAlert log page")
    end = min(len(page), 4 + int.from_bytes(page[2:4], "big"))
    pos, active = 4, []
    while pos + 4 <= end:
        code, length = int.from_bytes(page[pos : pos + 2], "big"), page[pos + 3]
        value = page[pos + 4 : pos + 4 + length]
        if value and value[-1] & 0x01:
            active.append(TapeAlert(code, FLAGS.get(code, f"flag {code} (reserved)")))
        pos += 4 + length
    return active


def read_tapealert(transport: Transport) -> list[TapeAlert]:
    """LOG SENSE page 2Eh (reading it clears the flags on most drives)."""
    res = transport.execute(cdb.log_sense(PAGE, alloc=0x400), data_in=0x400)
    if not res.good:
        raise error_for("LOG SENSE (TapeAlert)", res.sense, res.status)
    return decode_tapealert(res.data)
