"""An emulated tape drive and cartridge, in memory or in a file, for tests without a library.

``EmulatedDrive`` implements the part of ``hardware.drive.TapeDrive`` that the
block I/O uses and behaves as docs/hardware.md records of the real drive layer
on tgt: reads at a filemark raise FilemarkReached and leave the tape past it,
reads at the end raise EndOfData, a variable read of a longer block raises
BlockTooLarge and skips the block, every WRITE that ends past the early
warning point raises EarlyWarning after the data is written (WRITE FILEMARKS
does not, unless ``filemark_warns``), SPACE over more filemarks than there
are raises EndOfData, and on a write-protected cartridge every SPACE is
refused with WriteProtected (tgt does this on a read-only drive; switch it
off with ``refuse_space_when_protected=False`` to act as a real drive). The
position is tracked as the drive layer tracks it: unknown after SPACE to end
of data. Beyond tgt, the cartridge has a hard end: a write that does not fit
raises EndOfMedium and writes only the whole blocks that fit.

A cartridge file is a sequence of records, each ``type (1 byte: 1 block,
2 filemark) | length (u32 big-endian) | data``; it survives the process, so a
test can "eject" a cartridge and read it in another drive.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import BinaryIO

from tapir.hardware.cdb import SpaceCode
from tapir.hardware.drive import BOT, DEFAULT_BLOCK_SIZE, UNKNOWN, Position
from tapir.hardware.errors import (
    BlockTooLarge,
    EarlyWarning,
    EndOfData,
    EndOfMedium,
    FilemarkReached,
    MediumNotPresent,
    PositionUnknown,
    WriteProtected,
)
from tapir.hardware.sense import Sense, SenseKey

_RECORD = struct.Struct(">BI")
_BLOCK = 1
_FILEMARK = 2


class EmulatedCartridge:
    """A tape: blocks and filemarks from BOT, with an early warning point and a hard end.

    ``capacity`` is the hard end in data bytes; ``early_warning_at`` the number
    of data bytes after which writes report the early warning (default: 90 %
    of the capacity). ``path`` keeps the tape in a file (reopened if it
    exists); without it the tape lives in memory.
    """

    def __init__(
        self,
        barcode: str = "EMU001L8",
        capacity: int = 64 * 1024 * 1024,
        early_warning_at: int | None = None,
        *,
        path: str | Path | None = None,
        write_protected: bool = False,
        filemark_warns: bool = False,
    ) -> None:
        self.barcode = barcode
        self.capacity = capacity
        self.early_warning_at = capacity * 9 // 10 if early_warning_at is None else early_warning_at
        if not 0 < self.early_warning_at <= capacity:
            raise ValueError("the early warning point must lie within the capacity")
        self.write_protected = write_protected
        self.filemark_warns = filemark_warns
        self.path = Path(path) if path is not None else None
        self._file: BinaryIO
        if self.path is None:
            self._file = io.BytesIO()
        else:
            self._file = open(self.path, "r+b" if self.path.exists() else "w+b")  # noqa: SIM115
        # Per record: (kind, offset of its data in the file, length); and data
        # bytes used up to and including it, for the capacity checks.
        self._records: list[tuple[int, int, int]] = []
        self._used: list[int] = []
        self._load_index()

    def _load_index(self) -> None:
        f = self._file
        f.seek(0, io.SEEK_END)
        size = f.tell()
        f.seek(0)
        offset = 0
        used = 0
        while offset < size:
            head = f.read(_RECORD.size)
            if len(head) < _RECORD.size:
                raise ValueError(f"{self.path}: cartridge file cut short")
            kind, length = _RECORD.unpack(head)
            if kind not in (_BLOCK, _FILEMARK):
                raise ValueError(f"{self.path}: not an emulated cartridge file")
            offset += _RECORD.size
            used += length
            self._records.append((kind, offset, length))
            self._used.append(used)
            offset += length
            f.seek(offset)

    def close(self) -> None:
        """Close the backing file (the tape's contents stay in it)."""
        self._file.close()

    @property
    def objects(self) -> int:
        """Blocks and filemarks recorded."""
        return len(self._records)

    def used_before(self, index: int) -> int:
        """Data bytes recorded before logical object ``index``."""
        return self._used[index - 1] if index > 0 else 0

    def record(self, index: int) -> tuple[int, int]:
        """(kind, length) of logical object ``index``."""
        kind, _, length = self._records[index]
        return kind, length

    def read_data(self, index: int) -> bytes:
        """The bytes of block ``index``."""
        _, offset, length = self._records[index]
        self._file.seek(offset)
        return self._file.read(length)

    def truncate(self, index: int) -> None:
        """Forget everything from logical object ``index`` on (a write there erases it)."""
        if index >= len(self._records):
            return
        end = self._records[index][1] - _RECORD.size
        del self._records[index:]
        del self._used[index:]
        self._file.truncate(end)

    def append(self, kind: int, data: bytes | bytearray | memoryview = b"") -> None:
        """Record one block (or a filemark) after the last object."""
        self._file.seek(0, io.SEEK_END)
        self._file.write(_RECORD.pack(kind, len(data)))
        offset = self._file.tell()
        self._file.write(data)
        self._file.flush()
        self._records.append((kind, offset, len(data)))
        self._used.append(self.used_before(len(self._records) - 1) + len(data))

    def corrupt(self, index: int, byte: int, mask: int = 0x01) -> None:
        """Flip bits in block ``index`` as a damaged tape would (for tests)."""
        kind, offset, length = self._records[index]
        if kind != _BLOCK or not 0 <= byte < length:
            raise ValueError(f"object {index} has no byte {byte}")
        self._file.seek(offset + byte)
        value = self._file.read(1)[0] ^ mask
        self._file.seek(offset + byte)
        self._file.write(bytes([value]))


def _sense(key: SenseKey, asc: int = 0, ascq: int = 0) -> Sense:
    return Sense(key=key, asc=asc, ascq=ascq)


class EmulatedDrive:
    """A tape drive over an EmulatedCartridge; ``block_size`` 0 is variable-block mode."""

    def __init__(
        self,
        cartridge: EmulatedCartridge | None = None,
        block_size: int = 0,
        *,
        refuse_space_when_protected: bool = True,
    ) -> None:
        self.cartridge: EmulatedCartridge | None = None
        self.block_size = block_size
        # tgt answers every SPACE on a read-only drive with DATA PROTECT 27/00;
        # real drives space over write-protected cartridges.
        self.refuse_space_when_protected = refuse_space_when_protected
        self.position: Position = UNKNOWN
        self.early_warning = False
        self._index = 0
        if cartridge is not None:
            self.load(cartridge)

    # --- medium -------------------------------------------------------------

    def load(self, cartridge: EmulatedCartridge) -> None:
        """Insert a cartridge; the drive is at BOT."""
        if self.cartridge is not None:
            raise RuntimeError(f"drive holds {self.cartridge.barcode}; unload it first")
        self.cartridge = cartridge
        self.rewind()

    def unload(self) -> EmulatedCartridge:
        """Take the cartridge out and return it."""
        cart = self._tape()
        self.cartridge = None
        self.position = UNKNOWN
        self.early_warning = False
        return cart

    def wait_ready(self, timeout: float = 0.0) -> None:
        """Ready at once with a cartridge; MediumNotPresent without."""
        self._tape()

    def is_write_protected(self) -> bool:
        """The cartridge's write protection."""
        return self._tape().write_protected

    def set_block_size(self, block_size: int) -> None:
        """Fixed-block mode with this size, or variable mode with 0."""
        if block_size < 0:
            raise ValueError("block size must be >= 0")
        self.block_size = block_size

    def rewind(self) -> None:
        """Back to BOT."""
        self._tape()
        self._index = 0
        self.position = BOT
        self.early_warning = False

    def _tape(self) -> EmulatedCartridge:
        if self.cartridge is None:
            raise MediumNotPresent("TEST UNIT READY", _sense(SenseKey.NOT_READY, 0x3A))
        return self.cartridge

    # --- writing ------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Write one variable block, or whole fixed blocks; conditions as TapeDrive.write."""
        tape = self._tape()
        size = len(data)
        if size == 0:
            raise ValueError("refusing to write an empty block")
        fixed = self.block_size > 0
        if fixed and size % self.block_size:
            raise ValueError(f"{size} bytes is not a multiple of the {self.block_size}-byte block")
        if tape.write_protected:
            raise WriteProtected("WRITE", _sense(SenseKey.DATA_PROTECT, 0x27))
        unit = self.block_size if fixed else size
        view = memoryview(data)
        tape.truncate(self._index)
        used = tape.used_before(self._index)
        written = 0
        while written < size:
            if used + unit > tape.capacity:
                self.early_warning = True
                raise EndOfMedium("WRITE: end of medium (emulated)", unwritten=size - written)
            tape.append(_BLOCK, view[written : written + unit])
            self._index += 1
            self._advance_blocks(1)
            written += unit
            used += unit
        if used > tape.early_warning_at:
            self.early_warning = True
            raise EarlyWarning("WRITE: end-of-medium early warning reached; data written")

    def write_filemarks(self, count: int = 1) -> None:
        """Write ``count`` filemarks (0 only flushes, which here is nothing)."""
        tape = self._tape()
        if tape.write_protected:
            raise WriteProtected("WRITE FILEMARKS", _sense(SenseKey.DATA_PROTECT, 0x27))
        if count == 0:
            return
        tape.truncate(self._index)
        for _ in range(count):
            tape.append(_FILEMARK)
            self._index += 1
        p = self.position
        self.position = Position(_plus(p.file, count), 0, _plus(p.logical, count))
        if tape.filemark_warns and tape.used_before(self._index) > tape.early_warning_at:
            self.early_warning = True
            raise EarlyWarning("WRITE FILEMARKS: end-of-medium early warning reached")

    # --- reading ------------------------------------------------------------

    def read(self, max_bytes: int | None = None) -> bytes:
        """Read one block; FilemarkReached, EndOfData, BlockTooLarge as TapeDrive.read."""
        tape = self._tape()
        if self._index >= tape.objects:
            raise EndOfData("READ: end of data (emulated BLANK CHECK)")
        kind, length = tape.record(self._index)
        self._index += 1
        if kind == _FILEMARK:
            p = self.position
            self.position = Position(_plus(p.file, 1), 0, _plus(p.logical, 1))
            raise FilemarkReached("READ: filemark")
        if self.block_size:
            if length != self.block_size:
                # tgt answers a fixed-size read of another size with MEDIUM ERROR.
                self.position = UNKNOWN
                raise BlockTooLarge(f"READ: block is not {self.block_size} bytes", None)
        else:
            want = max_bytes or DEFAULT_BLOCK_SIZE
            if length > want:
                self._advance_blocks(1)
                raise BlockTooLarge(f"READ: block of {length} bytes is larger than {want}", length)
        self._advance_blocks(1)
        return tape.read_data(self._index - 1)

    # --- positioning --------------------------------------------------------

    def space(self, code: SpaceCode, count: int = 0) -> None:
        """SPACE over blocks or filemarks (negative: backwards) or to end of data."""
        tape = self._tape()
        if tape.write_protected and self.refuse_space_when_protected:
            raise WriteProtected("SPACE", _sense(SenseKey.DATA_PROTECT, 0x27))
        if code == SpaceCode.END_OF_DATA:
            self._index = tape.objects
            self.position = UNKNOWN
            return
        if code == SpaceCode.BLOCKS:
            self._space_blocks(tape, count)
        elif code == SpaceCode.FILEMARKS:
            self._space_filemarks(tape, count)
        else:
            raise ValueError(f"SPACE code {code!r} is not emulated")

    def _space_blocks(self, tape: EmulatedCartridge, count: int) -> None:
        step = 1 if count >= 0 else -1
        for _ in range(abs(count)):
            nxt = self._index if step > 0 else self._index - 1
            if nxt < 0:
                break  # backwards at BOT: tgt returns GOOD
            if nxt >= tape.objects:
                self.position = UNKNOWN
                raise EndOfData("SPACE ran into end of data")
            if tape.record(nxt)[0] == _FILEMARK:
                # tgt reports NO SENSE 00/05, which the drive layer maps to EndOfData.
                self.position = UNKNOWN
                raise EndOfData("SPACE stopped at a filemark (emulated 00/05)")
            self._index = nxt + 1 if step > 0 else nxt
        if self._index == 0:
            self.position = BOT
        else:
            self._advance_blocks(count)

    def _space_filemarks(self, tape: EmulatedCartridge, count: int) -> None:
        p = self.position
        if count >= 0:
            for _ in range(count):
                while self._index < tape.objects and tape.record(self._index)[0] != _FILEMARK:
                    self._index += 1
                if self._index >= tape.objects:
                    self.position = UNKNOWN
                    raise EndOfData("SPACE past the last filemark (emulated 00/05)")
                self._index += 1
            self.position = Position(_plus(p.file, count), 0, None)
            return
        for _ in range(-count):
            self._index -= 1
            while self._index >= 0 and tape.record(self._index)[0] != _FILEMARK:
                self._index -= 1
            if self._index < 0:
                self._index = 0
                self.position = BOT
                return
        # Backwards over a filemark lands just before it, at the end of the previous file.
        self.position = Position(_plus(p.file, count + 1), None, None)

    def space_to_end_of_data(self) -> None:
        """Position at end of data to append (position becomes unknown)."""
        self.space(SpaceCode.END_OF_DATA)

    def locate_file(self, file: int) -> None:
        """Position at the start of tape file ``file`` by rewinding and spacing filemarks."""
        if file < 0:
            raise ValueError("file number must be >= 0")
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

    def ensure_position(self) -> Position:
        """The tracked position; PositionUnknown when it is lost."""
        if not self.position.known:
            raise PositionUnknown("tape position unknown; rewind or locate a file first")
        return self.position

    def _advance_blocks(self, n: int) -> None:
        p = self.position
        self.position = Position(p.file, _plus(p.block, n), _plus(p.logical, n))

    def close(self) -> None:
        """Nothing to release (the cartridge stays usable)."""

    def __enter__(self) -> EmulatedDrive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _plus(a: int | None, b: int) -> int | None:
    return None if a is None else a + b
