"""A SCSI tape drive (SSC): positioning, fixed and variable block I/O, conditions.

The drive keeps its own idea of the position (file number, block within the
file, logical object count) from the commands it issued, because some devices
(tgt among them) answer READ POSITION with zeros and refuse LOCATE. Positioning
to a file therefore works by rewinding and SPACEing over filemarks whenever
LOCATE is refused. Tape conditions (filemark, end of data, early warning,
end of medium, write protection) surface as distinct exceptions; see errors.py.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from . import cdb
from .cdb import SpaceCode
from .errors import (
    BlockTooLarge,
    DeviceTimeout,
    EarlyWarning,
    EndOfData,
    EndOfMedium,
    FilemarkReached,
    MediumNotPresent,
    NotReady,
    PositionUnknown,
    UnitAttention,
    UnsupportedCommand,
    WriteProtected,
    error_for,
)
from .inquiry import InquiryData, inquire
from .sense import Sense, SenseKey
from .transport import Result, Transport, open_transport

DEFAULT_BLOCK_SIZE = 256 * 1024
LONG_TIMEOUT = 4 * 3600.0  # rewind, space to EOD, erase on a full cartridge
IO_TIMEOUT = 900.0


@dataclass(frozen=True)
class Position:
    """Where the tape is, as counted by this layer from BOT.

    ``file`` counts filemarks passed, ``block`` counts blocks since the last
    one, ``logical`` counts blocks and filemarks (SSC logical objects). A None
    means the layer does not know (after SPACE to end of data, for instance).
    """

    file: int | None = 0
    block: int | None = 0
    logical: int | None = 0

    @property
    def known(self) -> bool:
        """Every field is known."""
        return None not in (self.file, self.block, self.logical)


BOT = Position(0, 0, 0)
UNKNOWN = Position(None, None, None)


@dataclass(frozen=True)
class DriveStatus:
    """What MODE SENSE and TEST UNIT READY say about the drive right now."""

    ready: bool
    medium_present: bool
    write_protected: bool
    block_size: int
    density_code: int
    buffered_mode: int
    sense: str | None = None


@dataclass(frozen=True)
class BlockLimits:
    """READ BLOCK LIMITS: the block sizes the drive accepts."""

    granularity: int
    minimum: int
    maximum: int


def _plus(a: int | None, b: int) -> int | None:
    return None if a is None else a + b


class TapeDrive:
    """One tape drive reached through a Transport.

    ``block_size`` 0 selects variable-block mode; any other value fixed-block
    mode with blocks of that size (set on the drive by ``set_block_size``).
    A TapeDrive is not meant to be shared between threads except through
    StreamingWriter, which owns it while it runs.
    """

    def __init__(self, transport: Transport, block_size: int = DEFAULT_BLOCK_SIZE) -> None:
        self.transport = transport
        self.block_size = block_size
        self.position: Position = UNKNOWN
        self.early_warning = False
        self._lock = threading.RLock()

    @classmethod
    def open(cls, address: str, block_size: int = DEFAULT_BLOCK_SIZE) -> TapeDrive:
        """Open a drive by ``/dev/sgN`` path or ``iscsi://`` URL."""
        return cls(open_transport(address), block_size)

    def close(self) -> None:
        """Release the transport."""
        self.transport.close()

    def __enter__(self) -> TapeDrive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing -------------------------------------------------------

    def _exec(
        self,
        command: bytes,
        *,
        data_out: bytes | bytearray | memoryview | None = None,
        data_in: int = 0,
        timeout: float = 60.0,
    ) -> Result:
        return self.transport.execute(command, data_out=data_out, data_in=data_in, timeout=timeout)

    def _run(self, operation: str, command: bytes, **kw: object) -> Result:
        res = self._exec(command, **kw)  # type: ignore[arg-type]
        if not res.good:
            raise error_for(operation, res.sense, res.status)
        return res

    # --- identity and readiness ------------------------------------------

    def inquiry(self) -> InquiryData:
        """INQUIRY: vendor, product, revision and serial number."""
        return inquire(self.transport)

    def test_unit_ready(self) -> Sense | None:
        """TEST UNIT READY: None when ready, else the sense explaining why not."""
        res = self._exec(cdb.test_unit_ready())
        if res.good:
            return None
        if res.sense is None:
            raise error_for("TEST UNIT READY", None, res.status)
        return res.sense

    def wait_ready(self, timeout: float = 120.0, poll: float = 0.5) -> None:
        """Wait until the drive is ready; clears unit attentions on the way.

        Raises MediumNotPresent at once when the drive is empty and has not
        said it is loading, DeviceTimeout when it stays not ready.
        """
        deadline = time.monotonic() + timeout
        while True:
            sense = self.test_unit_ready()
            if sense is None:
                return
            if sense.key == SenseKey.UNIT_ATTENTION:
                # Medium changed or reset: where we thought we were is void.
                self.position = UNKNOWN
                continue
            if sense.key == SenseKey.NOT_READY and sense.asc == 0x3A:
                raise MediumNotPresent("TEST UNIT READY", sense)
            if sense.key != SenseKey.NOT_READY:
                raise error_for("TEST UNIT READY", sense)
            if time.monotonic() >= deadline:
                raise DeviceTimeout(f"drive not ready after {timeout:.0f} s: {sense}")
            time.sleep(poll)

    def read_block_limits(self) -> BlockLimits:
        """READ BLOCK LIMITS."""
        data = self._run("READ BLOCK LIMITS", cdb.read_block_limits(), data_in=6).data
        return BlockLimits(
            granularity=data[0] & 0x1F,
            maximum=int.from_bytes(data[1:4], "big"),
            minimum=int.from_bytes(data[4:6], "big"),
        )

    def mode_sense_header(self) -> bytes:
        """MODE SENSE(6) header and block descriptor (12 bytes)."""
        res = self._run("MODE SENSE", cdb.mode_sense6(0x00, alloc=12), data_in=12)
        return res.data.ljust(12, b"\x00")

    def status(self) -> DriveStatus:
        """Readiness, medium, write protection and block size in one call."""
        sense = self.test_unit_ready()
        if sense is not None and sense.key == SenseKey.UNIT_ATTENTION:
            self.position = UNKNOWN
            sense = self.test_unit_ready()
        present = not (sense is not None and sense.key == SenseKey.NOT_READY and sense.asc == 0x3A)
        header = self.mode_sense_header()
        return DriveStatus(
            ready=sense is None,
            medium_present=present,
            write_protected=bool(header[2] & 0x80),
            block_size=int.from_bytes(header[9:12], "big") if header[3] >= 8 else 0,
            density_code=header[4] if header[3] >= 8 else 0,
            buffered_mode=(header[2] >> 4) & 0x07,
            sense=str(sense) if sense else None,
        )

    def is_write_protected(self) -> bool:
        """The WP bit of the MODE SENSE header (cartridge or drive protection)."""
        return bool(self.mode_sense_header()[2] & 0x80)

    def set_block_size(self, block_size: int) -> None:
        """MODE SELECT the block size (0: variable) and use it for I/O from now on."""
        if not 0 <= block_size <= cdb.MAX_TRANSFER_6:
            raise ValueError(f"block size {block_size} out of range")
        header = self.mode_sense_header()
        density = header[4] if header[3] >= 8 else 0
        buffered = header[2] & 0x70 or 0x10
        params = bytes([0, 0, buffered, 8, density, 0, 0, 0, 0]) + block_size.to_bytes(3, "big")
        self._run("MODE SELECT", cdb.mode_select6(params), data_out=params)
        self.block_size = block_size

    # --- medium ---------------------------------------------------------

    def load(self) -> None:
        """LOAD: thread the cartridge and position at BOT."""
        with self._lock:
            self._run("LOAD", cdb.load_unload(True), timeout=LONG_TIMEOUT)
            self._at_bot()

    def unload(self) -> None:
        """UNLOAD: rewind and eject so that the changer can take the cartridge."""
        with self._lock:
            self._run("UNLOAD", cdb.load_unload(False), timeout=LONG_TIMEOUT)
            self.position = UNKNOWN
            self.early_warning = False

    def rewind(self) -> None:
        """REWIND to the beginning of the tape."""
        with self._lock:
            self._run("REWIND", cdb.rewind(), timeout=LONG_TIMEOUT)
            self._at_bot()

    def prevent_removal(self, prevent: bool = True) -> None:
        """PREVENT (or ALLOW) MEDIUM REMOVAL on the drive."""
        self._run("PREVENT ALLOW MEDIUM REMOVAL", cdb.prevent_allow_medium_removal(prevent))

    def erase(self) -> None:
        """Long ERASE from the current position (UnsupportedCommand where refused)."""
        with self._lock:
            self._run("ERASE", cdb.erase(long=True), timeout=LONG_TIMEOUT)

    def _at_bot(self) -> None:
        self.position = BOT
        self.early_warning = False

    # --- writing --------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Write one variable block, or whole fixed blocks (len a multiple of block_size).

        Raises EarlyWarning after the data is on tape (non-fatal), EndOfMedium
        when it did not fit, WriteProtected, or CommandFailed.
        """
        size = len(data)
        if size == 0:
            raise ValueError("refusing to write an empty block")
        fixed = self.block_size > 0
        if fixed and size % self.block_size:
            raise ValueError(f"{size} bytes is not a multiple of the {self.block_size}-byte block")
        count = size // self.block_size if fixed else size
        with self._lock:
            res = self._exec(cdb.write6(count, fixed), data_out=data, timeout=IO_TIMEOUT)
            blocks = count if fixed else 1
            if res.good:
                self._advance_blocks(blocks)
                return
            self._write_condition("WRITE", res, blocks, data)

    def _write_condition(
        self, operation: str, res: Result, objects: int, data: bytes | bytearray | memoryview
    ) -> None:
        sense = res.sense
        if sense is None:
            self.position = UNKNOWN
            raise error_for(operation, None, res.status)
        if sense.key == SenseKey.DATA_PROTECT:
            raise WriteProtected(operation, sense, res.status)
        unit = self.block_size if self.block_size and operation == "WRITE" else 1
        residue = sense.information if sense.information and sense.information > 0 else 0
        if sense.key == SenseKey.VOLUME_OVERFLOW:
            done = objects - residue if residue and unit > 1 else 0
            self._advance_blocks(done)
            self.early_warning = True
            raise EndOfMedium(f"{operation}: end of medium ({sense})", unwritten=residue * unit)
        if sense.key in (SenseKey.NO_SENSE, SenseKey.RECOVERED_ERROR) and sense.eom:
            # Early warning. Normally everything was written; a drive that stopped
            # short reports the residue, which is written now while space remains.
            if residue and operation == "WRITE":
                written = len(data) - residue * unit
                self._advance_blocks(objects - (residue if unit > 1 else 1))
                rest = memoryview(data)[written:]
                res2 = self._exec(cdb.write6(residue, unit > 1), data_out=rest, timeout=IO_TIMEOUT)
                if not res2.good and not (res2.sense and res2.sense.eom and not res2.sense.key):
                    self.position = UNKNOWN
                    raise error_for(operation, res2.sense, res2.status)
                self._advance_blocks(residue if unit > 1 else 1)
            else:
                if operation == "WRITE":
                    self._advance_blocks(objects)
                else:
                    self._advance_filemarks(objects)
            self.early_warning = True
            raise EarlyWarning(f"{operation}: end-of-medium early warning reached; data written")
        if sense.key in (SenseKey.NO_SENSE, SenseKey.RECOVERED_ERROR):
            if operation == "WRITE":
                self._advance_blocks(objects)
            else:
                self._advance_filemarks(objects)
            return
        self.position = UNKNOWN
        raise error_for(operation, sense, res.status)

    def write_filemarks(self, count: int = 1) -> None:
        """WRITE FILEMARKS: end the current tape file (count 0 only flushes the buffer).

        Raises EarlyWarning after the filemarks are written when past early warning.
        """
        with self._lock:
            res = self._exec(cdb.write_filemarks6(count), timeout=IO_TIMEOUT)
            if res.good:
                self._advance_filemarks(count)
                return
            self._write_condition("WRITE FILEMARKS", res, count, b"")

    def _advance_blocks(self, n: int) -> None:
        p = self.position
        self.position = Position(p.file, _plus(p.block, n), _plus(p.logical, n))

    def _advance_filemarks(self, n: int) -> None:
        if n:
            p = self.position
            self.position = Position(_plus(p.file, n), 0, _plus(p.logical, n))

    # --- reading --------------------------------------------------------

    def read(self, max_bytes: int | None = None) -> bytes:
        """Read one block: one fixed block, or a variable block of up to ``max_bytes``.

        Raises FilemarkReached (the tape is then past the filemark), EndOfData,
        BlockTooLarge (the block was longer than ``max_bytes``; it is skipped),
        or CommandFailed.
        """
        fixed = self.block_size > 0
        want = self.block_size if fixed else (max_bytes or DEFAULT_BLOCK_SIZE)
        with self._lock:
            res = self._exec(
                cdb.read6(1 if fixed else want, fixed), data_in=want, timeout=IO_TIMEOUT
            )
            if res.good:
                self._advance_blocks(1)
                return res.data
            return self._read_condition(res, want, fixed)

    def _read_condition(self, res: Result, want: int, fixed: bool) -> bytes:
        sense = res.sense
        if sense is None:
            self.position = UNKNOWN
            raise error_for("READ", None, res.status)
        if sense.filemark:
            self._advance_filemarks(1)
            raise FilemarkReached("READ: filemark")
        if sense.key == SenseKey.BLANK_CHECK or (
            sense.key == SenseKey.NO_SENSE and (sense.asc, sense.ascq) == (0x00, 0x05)
        ):
            raise EndOfData(f"READ: end of data ({sense})")
        if sense.ili and sense.key == SenseKey.NO_SENSE and not fixed:
            info = sense.information
            if info is not None and info < 0:
                self._advance_blocks(1)
                raise BlockTooLarge(
                    f"READ: block of {want - info} bytes is larger than {want}", want - info
                )
            if info is None:
                self.position = UNKNOWN
                raise PositionUnknown("READ: incorrect length without a residue")
            length = want - info
            if res.residual != info:
                # The transport's residual contradicts the sense: tgt sends only
                # `info` bytes of a short block. Step back and read it exactly.
                return self._reread(length)
            self._advance_blocks(1)
            return res.data[:length]
        if sense.key == SenseKey.MEDIUM_ERROR and (sense.asc, sense.ascq) == (0x31, 0x00) and fixed:
            # tgt answers a fixed-size read of a block of another size this way.
            self.position = UNKNOWN
            raise BlockTooLarge(f"READ: block is not {want} bytes ({sense})", None)
        self.position = UNKNOWN
        raise error_for("READ", sense, res.status)

    def _reread(self, length: int) -> bytes:
        back = self._exec(cdb.space6(SpaceCode.BLOCKS, -1), timeout=IO_TIMEOUT)
        if not back.good:
            self.position = UNKNOWN
            raise error_for("SPACE", back.sense, back.status)
        res = self._exec(cdb.read6(length, False), data_in=length, timeout=IO_TIMEOUT)
        if not res.good or len(res.data) != length:
            self.position = UNKNOWN
            raise error_for("READ", res.sense, res.status)
        self._advance_blocks(1)
        return res.data

    # --- positioning ----------------------------------------------------

    def space(self, code: SpaceCode, count: int = 0) -> None:
        """SPACE over blocks or filemarks (negative: backwards) or to end of data.

        Raises FilemarkReached when a block space stops at a filemark, EndOfData
        when it runs into end of data; the position is then unknown.
        """
        with self._lock:
            command = cdb.space6(code, count) if -(1 << 23) <= count < (1 << 23) else None
            res = self._exec(command or cdb.space16(code, count), timeout=LONG_TIMEOUT)
            if res.good:
                p = self.position
                if code == SpaceCode.BLOCKS:
                    self._advance_blocks(count)
                elif code == SpaceCode.FILEMARKS:
                    if count >= 0:
                        self.position = Position(_plus(p.file, count), 0, None)
                    else:
                        # Backwards over a filemark lands just before it, at the
                        # end of the previous file, whose length we do not know.
                        self.position = Position(_plus(p.file, count + 1), None, None)
                else:
                    self.position = Position(None, None, None)
                return
            sense = res.sense
            self.position = UNKNOWN
            if sense is not None and sense.filemark:
                raise FilemarkReached(f"SPACE stopped at a filemark ({sense})")
            if sense is not None and (
                sense.key == SenseKey.BLANK_CHECK or (sense.asc, sense.ascq) == (0x00, 0x05)
            ):
                raise EndOfData(f"SPACE ran into end of data ({sense})")
            raise error_for("SPACE", sense, res.status)

    def space_to_end_of_data(self) -> None:
        """Position at end of data to append (position becomes unknown)."""
        self.space(SpaceCode.END_OF_DATA)

    def locate_file(self, file: int) -> None:
        """Position at the start of tape file ``file`` (0-based).

        Rewinds and spaces forward over ``file`` filemarks; LOCATE is not used
        because it addresses blocks, not files, and many devices refuse it.
        Raises EndOfData when the tape has fewer files.
        """
        if file < 0:
            raise ValueError("file number must be >= 0")
        with self._lock:
            if self.position.known and self.position.file == file and self.position.block == 0:
                return
            self.rewind()
            if file:
                try:
                    self.space(SpaceCode.FILEMARKS, file)
                except EndOfData:
                    self.rewind()
                    raise
                self.position = Position(file, 0, None)

    def locate(self, logical: int) -> None:
        """LOCATE to a logical object identifier; UnsupportedCommand where refused."""
        with self._lock:
            command = cdb.locate10(logical) if logical <= 0xFFFFFFFF else cdb.locate16(logical)
            res = self._exec(command, timeout=LONG_TIMEOUT)
            if not res.good:
                err = error_for("LOCATE", res.sense, res.status)
                if not isinstance(err, UnsupportedCommand):
                    self.position = UNKNOWN
                raise err
            self.position = Position(None, None, logical)

    def read_position(self) -> int | None:
        """READ POSITION (short form): the device's logical object number, or None.

        None when the device says it does not know (LOLU bit; tgt always sets it
        and returns zeros). The layer's own ``position`` does not depend on it.
        """
        res = self._run("READ POSITION", cdb.read_position(), data_in=20)
        data = res.data.ljust(20, b"\x00")
        if data[0] & 0x04:  # LOLU: logical object location unknown
            return None
        return int.from_bytes(data[4:8], "big")

    def ensure_position(self) -> Position:
        """The tracked position; PositionUnknown when this layer lost it."""
        if not self.position.known:
            raise PositionUnknown("tape position unknown; rewind or locate a file first")
        return self.position


__all__ = [
    "BOT",
    "DEFAULT_BLOCK_SIZE",
    "UNKNOWN",
    "BlockLimits",
    "DriveStatus",
    "NotReady",
    "Position",
    "TapeDrive",
    "UnitAttention",
]
