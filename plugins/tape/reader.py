"""Reading chunks back: straight to the tape file and block, then streaming forward.

A chunk's location (volume, tape file, byte offset in the file's stream) gives
its block directly, because every block but a file's last carries a full
payload (docs/format/tape.md, section 2). The reader moves there with filemark
SPACE (forward from where it is when it can, otherwise rewind and space, which
is what ``locate_file`` does where LOCATE is missing) and a block SPACE, then
reads forward. It keeps the cartridge mounted, its place and the block it read
last, so a restore that asks for chunks in archive order reads the tape as one
stream instead of repositioning for every chunk.
"""

from __future__ import annotations

import contextlib
import queue
import threading

from tapir.appliance.plugin_api import (
    ChunkCorrupt,
    DeviceInfo,
    PluginContext,
    TapirError,
    VolumeInfo,
)
from tapir.hardware.cdb import SpaceCode
from tapir.hardware.drive import TapeDrive
from tapir.hardware.errors import EndOfData, FilemarkReached, HardwareError, WriteProtected

from .blockio import locate
from .drive_crypto import DriveCrypto, DriveKeyMissing, is_decryption_error, missing_key_message
from .format import BadBlock, BadEntry, Block, TapeFormatError, decode_block, payload_capacity
from .format.entries import ChunkEntry, read_chunk_entry
from .labels import read_media_label
from .library import Library
from .reservation import DriveLease, FileLock, hold, reserve_drive

#: A gap of at most this many blocks is read through rather than spaced over.
READ_THROUGH = 4


#: Blocks read ahead of the restore while it works on the ones it has.
READ_AHEAD = 8


class WrongCartridge(TapirError):
    """The cartridge loaded does not carry the label the catalog expects."""


class _ReadAhead:
    """A thread reading the blocks that follow, so the drive streams while chunks are decoded.

    It owns the drive until :meth:`stop`; it ends by itself after a tape file's
    end-of-stream block or at the first error, which :meth:`take` raises in turn.
    """

    def __init__(self, tape: TapeDrive, block_size: int, first_seq: int) -> None:
        self.tape = tape
        self.block_size = block_size
        #: The sequence number of the next block the drive reads (None: position lost).
        self.tape_seq: int | None = first_seq
        self._queue: queue.Queue[Block | BaseException] = queue.Queue(READ_AHEAD)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tapir-tape-readahead", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            assert self.tape_seq is not None
            try:
                raw = self.tape.read(self.block_size)
            except BaseException as exc:  # raised to the reader by take()
                self.tape_seq = None
                self._put(exc)
                return
            try:
                block = decode_block(raw, expect_sequence=self.tape_seq)
            except BaseException as exc:
                self.tape_seq += 1
                self._put(exc)
                return
            self.tape_seq += 1
            self._put(block)
            if block.end_of_stream:
                return

    def _put(self, item: Block | BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def take(self) -> Block:
        """The next block in order; raises what the drive or the decoder raised."""
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def stop(self) -> int | None:
        """Stop reading; returns the drive's next block number (None when unknown)."""
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.05)
        self._thread.join()
        return self.tape_seq


class TapeReader:
    """Reads chunk entries from a pool's volumes through one reserved drive."""

    def __init__(
        self,
        ctx: PluginContext,
        library: Library,
        drives: list[DeviceInfo],
        *,
        wait: bool = True,
        purpose: str = "restore",
        crypto: DriveCrypto | None = None,
    ) -> None:
        self.ctx = ctx
        #: Sends the pool's drive key after each load, clears it before each unload.
        self.crypto = crypto
        self.library = library
        self.drives = drives
        self.wait = wait
        self.purpose = purpose
        self.lease: DriveLease | None = None
        self.tape: TapeDrive | None = None
        self.barcode: str | None = None
        self._volume_lock: FileLock | None = None
        self.block_size = 0
        self._file: int | None = None  # tape file the drive is in
        self._next_seq = 0  # sequence number of the next block the drive reads
        self._buf = b""  # payload of the block read last
        self._buf_start = 0  # stream offset of _buf[0]
        self._ended = False  # the block read last ended its tape file
        self._tape_seq: int | None = 0  # the next block the drive reads (None: unknown)
        self._ahead: _ReadAhead | None = None
        #: Counters for tests and the benchmark.
        self.blocks_read = 0
        self.blocks_spaced = 0
        self.repositions = 0
        self.mounts = 0

    # --- public ---------------------------------------------------------------

    def read_chunk(self, barcode: str, file: int, offset: int) -> ChunkEntry:
        """The chunk entry starting at ``offset`` of tape file ``file`` on ``barcode``."""
        self._mount(barcode)
        try:
            return self._read_entry(file, offset)
        except HardwareError as exc:
            if not is_decryption_error(exc):
                raise
            crypto, lease = self.crypto, self.lease
            pool = crypto.pool if crypto is not None else None
            loaded = crypto is not None and lease is not None and lease.drive.name in crypto.engaged
            message = missing_key_message(pool, barcode, exc, key_loaded=loaded)
            raise DriveKeyMissing(message) from exc

    def _read_entry(self, file: int, offset: int) -> ChunkEntry:
        cap = payload_capacity(self.block_size)
        self._seek(file, offset, cap)
        pos = offset - self._buf_start

        def read_exact(n: int) -> bytes:
            nonlocal pos
            parts = []
            need = n
            while need:
                if pos >= len(self._buf):
                    if self._ended:
                        raise BadEntry(f"tape file {file} ends inside the entry at {offset}")
                    pos -= len(self._buf)
                    self._read_block()
                take = min(need, len(self._buf) - pos)
                parts.append(self._buf[pos : pos + take])
                pos += take
                need -= take
            return b"".join(parts)

        return read_chunk_entry(read_exact, offset)

    def read_blob(self, chunk_id: bytes, barcode: str, file: int, offset: int) -> bytes:
        """The sealed blob of ``chunk_id``; ChunkCorrupt when the entry is another chunk."""
        entry = self.read_chunk(barcode, file, offset)
        if entry.chunk_id != chunk_id:
            raise ChunkCorrupt(
                chunk_id,
                f"{barcode} file {file} offset {offset} holds chunk {entry.chunk_id.hex()}: "
                "the index and the tape disagree",
            )
        return entry.blob

    def close(self) -> None:
        """Unload the cartridge to its slot and give the drive back."""
        self._stop_reading_ahead()
        try:
            if self.tape is not None and self.lease is not None:
                try:
                    if self.crypto is not None:
                        self.crypto.release(self.tape, self.lease.drive)
                    self.library.unmount(self.lease.drive, self.tape)
                finally:
                    self.tape.close()
        finally:
            self.tape = None
            self.barcode = None
            if self._volume_lock is not None:
                self._volume_lock.release()
                self._volume_lock = None
            if self.lease is not None:
                self.lease.release()
                self.lease = None

    # --- mounting ---------------------------------------------------------------

    def _mount(self, barcode: str) -> None:
        if self.barcode == barcode and self.tape is not None:
            return
        if self.lease is None:
            self.lease = reserve_drive(self.ctx, self.drives, purpose=self.purpose, wait=self.wait)
        if self.crypto is not None:
            # drive_encryption=required: a drive that cannot decrypt loads nothing.
            self.crypto.check(self.lease.drive)
        self._stop_reading_ahead()
        if self.tape is not None:
            if self.crypto is not None:
                self.crypto.release(self.tape, self.lease.drive)
            self.library.unmount(self.lease.drive, self.tape)
            self.tape.close()
            self.tape = None
        if self._volume_lock is not None:
            self._volume_lock.release()
        self.barcode = None
        self._volume_lock = hold(self.ctx, "volume", barcode, purpose=self.purpose, wait=self.wait)
        expected = self._volume(barcode)
        self.ctx.logger.info(
            "restore needs cartridge %s: loading it into %s", barcode, self.lease.drive.name
        )
        self.tape = self.library.mount(barcode, self.lease.drive)
        self.mounts += 1
        if self.crypto is not None:
            self.crypto.engage(self.tape, self.lease.drive)
        label = read_media_label(self.tape)
        if (
            label is None
            or label.barcode != barcode
            or (expected.uuid is not None and label.volume != expected.uuid)
        ):
            found = "a blank tape" if label is None else f"{label.barcode} ({label.volume})"
            raise WrongCartridge(
                f"the cartridge with barcode {barcode} holds {found}, not volume "
                f"{barcode} ({expected.uuid}) of the catalog"
            )
        self.block_size = label.block_size
        self.barcode = barcode
        self._file, self._next_seq, self._buf, self._buf_start = None, 0, b"", 0
        self._tape_seq = None
        self._ended = False

    def _volume(self, barcode: str) -> VolumeInfo:
        assert self.ctx.volumes is not None
        vol = self.ctx.volumes.get(barcode)
        if vol is None:
            raise TapirError(f"volume {barcode} is not in the catalog")
        if vol.location in ("offline",) or vol.location.startswith("vault"):
            raise TapirError(
                f"cartridge {barcode} is needed but is {vol.location}"
                + (f" ({vol.note})" if vol.note else "")
                + "; put it into the library and retry"
            )
        return vol

    # --- positioning ------------------------------------------------------------

    def _seek(self, file: int, offset: int, cap: int) -> None:
        block = offset // cap
        if (
            self._file == file
            and self._buf
            and self._buf_start <= offset < self._buf_start + len(self._buf)
        ):
            return  # in the block read last
        if self._file == file and not self._ended and block >= self._next_seq:
            gap = block - self._next_seq
            if gap <= READ_THROUGH:
                for _ in range(gap):
                    self._read_block()
                self._read_block()
                return
            self._stop_reading_ahead()
            if self._tape_seq is not None and self._tape_seq <= block:
                self._skip_blocks(block - self._tape_seq, cap)
                self._read_block()
                return
        self._stop_reading_ahead()
        self._goto_file(file)
        self._skip_blocks(block, cap)
        self._read_block()

    def _stop_reading_ahead(self) -> None:
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            # Blocks it read and nobody took are gone past the head; the drive is
            # at ahead's position, which a later seek starts from.
            self._tape_seq = ahead.stop()

    def _goto_file(self, file: int) -> None:
        assert self.tape is not None
        self.repositions += 1
        pos = self.tape.position
        here = pos.file
        try:
            if here is not None and pos.known and here < file:
                # Forward over the filemarks between here and there: no rewind.
                self.tape.space(SpaceCode.FILEMARKS, file - here)
            else:
                locate(self.tape, file, self.block_size)
        except WriteProtected:
            locate(self.tape, file, self.block_size)
        except EndOfData:
            self._file = None
            raise TapirError(
                f"{self.barcode} has no tape file {file}: the index and the tape disagree"
            ) from None
        self._file, self._next_seq, self._buf, self._buf_start = file, 0, b"", 0
        self._tape_seq = 0
        self._ended = False

    def _skip_blocks(self, count: int, cap: int) -> None:
        """Move the drive ``count`` blocks on from ``_tape_seq`` (no read-ahead running)."""
        assert self.tape is not None and self._tape_seq is not None
        if count > 0:
            try:
                self.tape.space(SpaceCode.BLOCKS, count)
            except WriteProtected:
                for _ in range(count):  # tgt refuses SPACE on a write-protected drive
                    self.tape.read(self.block_size)
            except (FilemarkReached, EndOfData):
                file, self._file = self._file, None
                raise TapirError(
                    f"{self.barcode} file {file} is shorter than the index says"
                ) from None
            self.blocks_spaced += count
        self._tape_seq += count
        self._next_seq = self._tape_seq
        self._buf_start = self._next_seq * cap
        self._buf = b""

    def _read_block(self) -> None:
        assert self.tape is not None
        if self._ended:
            raise BadEntry(f"read past the end of tape file {self._file} on {self.barcode}")
        if self._ahead is None:
            assert self._tape_seq == self._next_seq
            self._ahead = _ReadAhead(self.tape, self.block_size, self._next_seq)
        try:
            block = self._ahead.take()
        except (FilemarkReached, EndOfData, TapeFormatError) as exc:
            file, self._file = self._file, None  # position again from a known place next time
            self._stop_reading_ahead()
            if isinstance(exc, TapeFormatError):
                raise
            raise BadEntry(
                f"tape file {file} on {self.barcode} ends before its end-of-stream block"
            ) from None
        except BaseException:
            self._stop_reading_ahead()
            self._file = None
            raise
        cap = payload_capacity(block.block_size)
        if not block.end_of_stream and len(block.payload) != cap:
            self._stop_reading_ahead()
            self._file = None
            raise BadBlock(f"{self.barcode}: block {block.sequence} is short but not the last one")
        self.blocks_read += 1
        start = self._next_seq * cap
        self._next_seq += 1
        self._buf, self._buf_start = block.payload, start
        self._ended = block.end_of_stream
        if self._ended:
            self._stop_reading_ahead()
