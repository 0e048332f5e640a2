"""Command descriptor blocks for SPC, SSC (tape) and SMC (changer) commands.

pyscsi builds the SPC and SMC CDBs it knows (INQUIRY, MODE SENSE(6), TEST UNIT
READY, PREVENT ALLOW MEDIUM REMOVAL, MOVE MEDIUM, READ ELEMENT STATUS,
INITIALIZE ELEMENT STATUS); the SSC commands it lacks are built here. pyscsi
keeps its builder state on a class attribute, so its calls are serialised.
"""

from __future__ import annotations

import struct
import threading
from enum import IntEnum

from pyscsi.pyscsi import scsi_enum_command as _ops
from pyscsi.pyscsi.scsi_cdb_initelementstatus import InitializeElementStatus
from pyscsi.pyscsi.scsi_cdb_inquiry import Inquiry
from pyscsi.pyscsi.scsi_cdb_modesense6 import ModeSense6
from pyscsi.pyscsi.scsi_cdb_movemedium import MoveMedium
from pyscsi.pyscsi.scsi_cdb_preventallow_mediumremoval import PreventAllowMediumRemoval
from pyscsi.pyscsi.scsi_cdb_readelementstatus import ReadElementStatus
from pyscsi.pyscsi.scsi_cdb_testunitready import TestUnitReady

_pyscsi_lock = threading.Lock()
_SPC = _ops.spc_opcodes
_SMC = _ops.smc_opcodes

MAX_TRANSFER_6 = 0xFFFFFF
"""Largest transfer length a 6-byte READ/WRITE can carry (bytes or blocks)."""


class SpaceCode(IntEnum):
    """SPACE(6) codes (SSC-5 7.8)."""

    BLOCKS = 0
    FILEMARKS = 1
    SEQUENTIAL_FILEMARKS = 2
    END_OF_DATA = 3


class ElementType(IntEnum):
    """SMC element type codes."""

    ALL = 0
    TRANSPORT = 1
    STORAGE = 2
    IMPORT_EXPORT = 3
    DATA_TRANSFER = 4


def _u24(value: int, what: str) -> bytes:
    if not 0 <= value <= MAX_TRANSFER_6:
        raise ValueError(f"{what} {value} does not fit 24 bits")
    return value.to_bytes(3, "big")


def _s24(value: int) -> bytes:
    if not -(1 << 23) <= value < (1 << 23):
        raise ValueError(f"count {value} does not fit a signed 24-bit field")
    return (value & 0xFFFFFF).to_bytes(3, "big")


# --- SPC (through pyscsi) -------------------------------------------------


def test_unit_ready() -> bytes:
    """TEST UNIT READY."""
    with _pyscsi_lock:
        return bytes(TestUnitReady(_SPC["TEST_UNIT_READY"]).cdb)


def inquiry(evpd: bool = False, page: int = 0, alloc: int = 255) -> bytes:
    """INQUIRY, standard data or one VPD page."""
    with _pyscsi_lock:
        return bytes(Inquiry(_SPC["INQUIRY"], evpd=int(evpd), page_code=page, alloclen=alloc).cdb)


def mode_sense6(page: int, subpage: int = 0, alloc: int = 255, dbd: bool = False) -> bytes:
    """MODE SENSE(6) of one page (0x3F: all)."""
    with _pyscsi_lock:
        cmd = ModeSense6(
            _SPC["MODE_SENSE_6"],
            page_code=page,
            sub_page_code=subpage,
            dbd=int(dbd),
            alloclen=alloc,
        )
        return bytes(cmd.cdb)


def prevent_allow_medium_removal(prevent: bool) -> bytes:
    """PREVENT ALLOW MEDIUM REMOVAL."""
    with _pyscsi_lock:
        op = _SPC["PREVENT_ALLOW_MEDIUM_REMOVAL"]
        return bytes(PreventAllowMediumRemoval(op, prevent=int(prevent)).cdb)


def mode_select6(parameters: bytes, save: bool = False) -> bytes:
    """MODE SELECT(6) with page format set; ``parameters`` is the data-out list."""
    if len(parameters) > 255:
        raise ValueError("MODE SELECT(6) parameter list is limited to 255 bytes")
    return bytes([0x15, 0x10 | int(save), 0, 0, len(parameters), 0])


def log_sense(page: int, subpage: int = 0, alloc: int = 0x4000) -> bytes:
    """LOG SENSE of current cumulative values of one page."""
    return struct.pack(">BBBBxHHx", 0x4D, 0, 0x40 | (page & 0x3F), subpage, 0, alloc)


def read_attribute(
    attribute: int = 0, alloc: int = 0x10000, partition: int = 0, service_action: int = 0
) -> bytes:
    """READ ATTRIBUTE (MAM) from ``attribute`` on; service action 0: values."""
    return struct.pack(">BBxxxxxBHIxB", 0x8C, service_action & 0x1F, partition, attribute, alloc, 0)


def security_protocol_in(protocol: int, specific: int, alloc: int) -> bytes:
    """SECURITY PROTOCOL IN."""
    return struct.pack(">BBHxxIxx", 0xA2, protocol, specific, alloc)


def security_protocol_out(protocol: int, specific: int, length: int) -> bytes:
    """SECURITY PROTOCOL OUT."""
    return struct.pack(">BBHxxIxx", 0xB5, protocol, specific, length)


# --- SSC ------------------------------------------------------------------


def read6(length: int, fixed: bool, sili: bool = False) -> bytes:
    """READ(6): ``length`` is blocks when fixed, bytes when variable."""
    return bytes([0x08, (int(sili) << 1) | int(fixed), *_u24(length, "transfer length"), 0])


def write6(length: int, fixed: bool) -> bytes:
    """WRITE(6): ``length`` is blocks when fixed, bytes when variable."""
    return bytes([0x0A, int(fixed), *_u24(length, "transfer length"), 0])


def write_filemarks6(count: int, immediate: bool = False) -> bytes:
    """WRITE FILEMARKS(6); a count of 0 only flushes the drive's buffer."""
    return bytes([0x10, int(immediate), *_u24(count, "filemark count"), 0])


def space6(code: SpaceCode, count: int = 0) -> bytes:
    """SPACE(6); negative counts move towards the beginning of the tape."""
    return bytes([0x11, int(code), *_s24(count), 0])


def space16(code: SpaceCode, count: int = 0) -> bytes:
    """SPACE(16), for counts beyond 24 bits."""
    return struct.pack(">BBxxq4x", 0x91, int(code), count)


def rewind(immediate: bool = False) -> bytes:
    """REWIND."""
    return bytes([0x01, int(immediate), 0, 0, 0, 0])


def load_unload(load: bool, immediate: bool = False, hold: bool = False) -> bytes:
    """LOAD UNLOAD: load (and position at BOT) or unload (eject)."""
    return bytes([0x1B, int(immediate), 0, 0, (int(hold) << 1) | int(load), 0])


def read_block_limits() -> bytes:
    """READ BLOCK LIMITS."""
    return bytes([0x05, 0, 0, 0, 0, 0])


def locate10(block: int, partition: int | None = None) -> bytes:
    """LOCATE(10) to a logical object identifier (and optionally a partition)."""
    if not 0 <= block <= 0xFFFFFFFF:
        raise ValueError(f"block {block} does not fit LOCATE(10)")
    cp = 0x02 if partition is not None else 0
    return struct.pack(">BBxIxBx", 0x2B, cp, block, partition or 0)


def locate16(block: int, partition: int | None = None) -> bytes:
    """LOCATE(16) to a logical object identifier (and optionally a partition)."""
    cp = 0x02 if partition is not None else 0
    return struct.pack(">BBxBQ4x", 0x92, cp, partition or 0, block)


def read_position(long_form: bool = False) -> bytes:
    """READ POSITION, short form (20 bytes) or long form (32 bytes)."""
    action = 0x06 if long_form else 0x00
    return bytes([0x34, action, 0, 0, 0, 0, 0, 0, 0, 0])


def erase(long: bool = True, immediate: bool = False) -> bytes:
    """ERASE from the current position to the end of the medium (long) or a gap (short)."""
    return bytes([0x19, (int(immediate) << 1) | int(long), 0, 0, 0, 0])


def report_density_support(media: bool = False, alloc: int = 0x2000) -> bytes:
    """REPORT DENSITY SUPPORT: what the drive can do, or (media=True) the loaded medium."""
    return struct.pack(">BBxxxxxHx", 0x44, int(media), alloc)


# --- SMC (through pyscsi) -------------------------------------------------


def move_medium(transport: int, source: int, destination: int) -> bytes:
    """MOVE MEDIUM between two element addresses using ``transport``."""
    with _pyscsi_lock:
        return bytes(MoveMedium(_SMC["MOVE_MEDIUM"], transport, source, destination).cdb)


def read_element_status(
    element_type: ElementType = ElementType.ALL,
    start: int = 0,
    count: int = 0xFFFF,
    alloc: int = 0xFFFF,
    voltag: bool = True,
    dvcid: bool = False,
) -> bytes:
    """READ ELEMENT STATUS with volume tags and, if asked, device identifiers."""
    with _pyscsi_lock:
        cmd = ReadElementStatus(
            _SMC["READ_ELEMENT_STATUS"],
            start,
            count,
            element_type=int(element_type),
            voltag=int(voltag),
            curdata=0,
            dvcid=int(dvcid),
            alloclen=alloc,
        )
        return bytes(cmd.cdb)


def initialize_element_status() -> bytes:
    """INITIALIZE ELEMENT STATUS: the library rescans every element."""
    with _pyscsi_lock:
        return bytes(InitializeElementStatus(_SMC["INITIALIZE_ELEMENT_STATUS"]).cdb)
