"""Writing and reading tape files block by block through a drive-like object.

``TapeFileWriter`` cuts a tape file's stream (header, then entries) into
fixed-size blocks and writes them with ``drive.write``; ``close`` marks the
last block end-of-stream and writes the filemark. The end-of-medium early
warning reaches the caller as ``hardware.errors.EarlyWarning`` once, after the
entry during which it happened is complete in the stream: the caller then
closes the archive with ``continues=True`` and goes on with
``header.next_part(...)`` on the next cartridge. ``TapeFileReader`` reads one
tape file, verifies every block and stops at its filemark.

The drive is a ``hardware.drive.TapeDrive`` or ``plugins.tape.emulated.EmulatedDrive``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from tapir.hardware.cdb import SpaceCode
from tapir.hardware.drive import Position
from tapir.hardware.errors import (
    BlockTooLarge,
    EarlyWarning,
    EndOfData,
    FilemarkReached,
    WriteProtected,
)

from .format.blocks import (
    DEFAULT_BLOCK_SIZE,
    BlockFlags,
    check_block_size,
    decode_block,
    encode_block,
    payload_capacity,
)
from .format.catalog import CatalogRecord, VolumeCatalog, decode_records
from .format.entries import (
    ChunkEntry,
    ManifestEntry,
    chunk_entry_head,
    manifest_entry_head,
    read_chunk_entry,
    read_manifest_entry,
)
from .format.errors import (
    BadBlock,
    BadEntry,
    BadHeader,
    TapeFormatError,
    TruncatedFile,
    WrongFileKind,
)
from .format.files import (
    ARCHIVE_KINDS,
    ArchiveHeader,
    CatalogHeader,
    FileHeader,
    FileKind,
    decode_header,
)


class DriveLike(Protocol):
    """The part of ``hardware.drive.TapeDrive`` that block I/O uses."""

    position: Position
    early_warning: bool

    def write(self, data: bytes | bytearray | memoryview) -> None: ...
    def write_filemarks(self, count: int = 1) -> None: ...
    def read(self, max_bytes: int | None = None) -> bytes: ...
    def rewind(self) -> None: ...
    def space(self, code: SpaceCode, count: int = 0) -> None: ...
    def locate_file(self, file: int) -> None: ...


class EmptyFile(TruncatedFile):
    """A filemark where a tape file's first block should be; the tape is past it."""


class WriterClosed(TapeFormatError):
    """The tape file writer was closed, aborted or failed; it takes no more data."""


@dataclass
class FileSummary:
    """What a TapeFileWriter wrote: enough for the volume's catalog record."""

    header: FileHeader
    file_number: int | None
    blocks: int = 0
    stream_bytes: int = 0
    entries: int = 0
    continues: bool = False
    early_warning: bool = False
    chunks: list[tuple[bytes, int]] = field(default_factory=list)
    manifests: list[tuple[str, int]] = field(default_factory=list)

    def catalog_record(self, file_number: int | None = None) -> CatalogRecord:
        """The catalog record of this file (its number from the drive unless given)."""
        number = self.file_number if file_number is None else file_number
        if number is None:
            raise ValueError("the tape file number is unknown; pass it explicitly")
        return CatalogRecord.for_file(
            number,
            self.header,
            continues=self.continues,
            chunks=self.chunks,
            manifests=self.manifests,
        )


class TapeFileWriter:
    """Writes one tape file at the drive's current position.

    Every block is exactly ``block_size`` bytes; every block but the last
    carries a full payload, which is what lets the catalog locate an entry by
    its byte offset alone. A write error other than the early warning
    (EndOfMedium, WriteProtected, a failed command) leaves the file without its
    end-of-stream block, so readers will see it as truncated; the writer then
    refuses further use.
    """

    def __init__(
        self, drive: DriveLike, header: FileHeader, block_size: int = DEFAULT_BLOCK_SIZE
    ) -> None:
        self.drive = drive
        self.block_size = check_block_size(block_size)
        self._capacity = payload_capacity(block_size)
        record = header.encode()
        if len(record) > self._capacity:
            raise ValueError(f"a {len(record)}-byte header does not fit one block's payload")
        position = getattr(drive, "position", None)
        number = position.file if position is not None and position.block == 0 else None
        self.summary = FileSummary(header=header, file_number=number)
        self._buffer = bytearray(record)
        self._offset = len(record)
        self._base_flags = BlockFlags.NONE
        if isinstance(header, ArchiveHeader) and header.continued:
            self._base_flags = BlockFlags.CONTINUED_FROM_PREVIOUS
        self._reported = False
        self._done = False

    @property
    def header(self) -> FileHeader:
        """The header this file starts with."""
        return self.summary.header

    @property
    def early_warning(self) -> bool:
        """The drive reported the end-of-medium early warning while writing this file."""
        return self.summary.early_warning

    def add_chunk(self, chunk_id: bytes, blob: bytes | bytearray | memoryview) -> int:
        """Append a chunk entry to a chunk archive; returns its offset in the stream.

        Raises EarlyWarning (after the entry is complete in the stream) the first
        time the drive reported the early warning; the archive should then be
        closed with ``continues=True`` and continued on the next volume.
        """
        self._need(FileKind.CHUNK_ARCHIVE)
        head = chunk_entry_head(chunk_id, len(blob))
        offset = self._append(head, blob)
        self.summary.chunks.append((bytes(chunk_id), offset))
        self._report()
        return offset

    def add_manifest(self, name: str, blob: bytes | bytearray | memoryview) -> int:
        """Append a manifest entry to a manifest archive; as ``add_chunk`` otherwise."""
        self._need(FileKind.MANIFEST_ARCHIVE)
        offset = self._append(manifest_entry_head(name, len(blob)), blob)
        self.summary.manifests.append((name, offset))
        self._report()
        return offset

    def add_catalog_record(self, record: CatalogRecord) -> int:
        """Append one record to a catalog file; never raises EarlyWarning.

        A catalog is written whole on its volume: the space past the early
        warning is there for it.
        """
        self._need(FileKind.CATALOG)
        assert isinstance(self.header, CatalogHeader)
        if record.file_number >= self.header.file_number:
            raise ValueError(
                f"catalog file {self.header.file_number} cannot describe file {record.file_number}"
            )
        return self._append(record.encode())

    def close(self, continues: bool = False) -> FileSummary:
        """Write the last block (end of stream) and the filemark; return the summary.

        ``continues`` marks an archive that goes on in a tape file on the next
        volume. An early warning met here is recorded in the summary, not raised.
        """
        if continues and self.header.kind not in ARCHIVE_KINDS:
            raise ValueError(f"a {self.header.kind} file cannot continue on another volume")
        self._usable()
        self._done = True
        flags = self._base_flags | BlockFlags.END_OF_STREAM
        if continues:
            flags |= BlockFlags.CONTINUES_ON_NEXT
        self._write_block(self._buffer, flags)
        self._buffer.clear()
        try:
            self.drive.write_filemarks(1)
        except EarlyWarning:
            self.summary.early_warning = True
        self.summary.continues = continues
        self.summary.stream_bytes = self._offset
        return self.summary

    def abort(self, filemark: bool = True) -> None:
        """Give up the file: buffered data is dropped, it gets no end-of-stream block.

        With ``filemark`` a filemark still ends it, so that the tape stays a
        sequence of files; errors while writing it are swallowed because abort
        runs on an error path already.
        """
        if self._done:
            return
        self._done = True
        self._buffer.clear()
        if filemark:
            try:
                self.drive.write_filemarks(1)
            except EarlyWarning:
                self.summary.early_warning = True
            except Exception:  # the error that made us abort matters more
                pass

    def __enter__(self) -> TapeFileWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            if not self._done:
                self.close()
        else:
            self.abort()

    # --- internals --------------------------------------------------------

    def _need(self, kind: FileKind) -> None:
        self._usable()
        if self.header.kind != kind:
            raise WrongFileKind(f"this tape file is a {self.header.kind}, not a {kind}")

    def _usable(self) -> None:
        if self._done:
            raise WriterClosed("the tape file writer is closed")

    def _append(self, *parts: bytes | bytearray | memoryview) -> int:
        offset = self._offset
        buf = self._buffer
        for part in parts:
            buf += part
            self._offset += len(part)
        # Keep at least one byte back so that close() always has a last block.
        cap = self._capacity
        cut = 0
        try:
            with memoryview(buf) as view:
                while len(buf) - cut > cap:
                    self._write_block(view[cut : cut + cap], self._base_flags)
                    cut += cap
        finally:
            del buf[:cut]
        self.summary.entries += 1
        return offset

    def _write_block(self, payload: bytes | bytearray | memoryview, flags: BlockFlags) -> None:
        block = encode_block(self.summary.blocks, payload, self.block_size, flags)
        try:
            self.drive.write(block)
        except EarlyWarning:
            self.summary.early_warning = True
        except BaseException:
            self._done = True
            raise
        self.summary.blocks += 1

    def _report(self) -> None:
        if self.summary.early_warning and not self._reported:
            self._reported = True
            raise EarlyWarning("end-of-medium early warning: close this archive on this volume")


class TapeFileReader:
    """Reads the tape file at the drive's position: header first, then its entries.

    Every block's checksum, sequence number, size and flags are verified; the
    reader stops after the filemark that ends the file (the drive is then at
    the start of the next file). ``block_size`` is what to ask the drive for
    first; a larger block on tape is found out and re-read once.

    Opening raises ``hardware.errors.EndOfData`` when there is no tape file at
    the position (end of recorded data), EmptyFile at a bare filemark, and a
    TapeFormatError when the first block is not a valid Tapir file header.
    The drive is past the filemark only once the entries are read to the end.
    """

    def __init__(self, drive: DriveLike, block_size: int = DEFAULT_BLOCK_SIZE) -> None:
        self.drive = drive
        self.block_size = check_block_size(block_size)
        self._sequence = 0
        self._flags: BlockFlags | None = None
        self._ended = False
        self.continues = False
        self.filemark = False
        self._buffer = bytearray()
        self._pos = 0
        first = self._next_payload()
        assert first is not None  # the first read either returns a block or raises
        self.header, used = decode_header(first)
        self._check_flags_against_header()
        self._buffer += first
        self._pos = used
        self._offset = used

    @property
    def kind(self) -> FileKind:
        """The kind of this tape file."""
        return self.header.kind

    @property
    def complete(self) -> bool:
        """The end-of-stream block was read (the whole file is verified)."""
        return self._ended

    # --- entries ----------------------------------------------------------

    def chunks(self) -> Iterator[ChunkEntry]:
        """The entries of a chunk archive, in order; WrongFileKind for another kind."""
        self._need(FileKind.CHUNK_ARCHIVE)
        while not self._at_end():
            yield read_chunk_entry(self._read_exact, self._offset)

    def manifests(self) -> Iterator[ManifestEntry]:
        """The entries of a manifest archive, in order."""
        self._need(FileKind.MANIFEST_ARCHIVE)
        while not self._at_end():
            yield read_manifest_entry(self._read_exact, self._offset)

    def catalog(self) -> VolumeCatalog:
        """The records of a catalog file."""
        self._need(FileKind.CATALOG)
        assert isinstance(self.header, CatalogHeader)
        records = list(decode_records(self._rest_payloads(), self.header))
        return VolumeCatalog(header=self.header, records=records)

    def drain(self) -> int:
        """Read and verify the rest of the file without decoding it; returns its bytes."""
        return sum(len(p) for p in self._rest_payloads())

    # --- stream -----------------------------------------------------------

    def _need(self, kind: FileKind) -> None:
        if self.header.kind != kind:
            raise WrongFileKind(f"tape file is a {self.header.kind}, not a {kind}")

    def _rest_payloads(self) -> Iterator[bytes]:
        if self._pos < len(self._buffer):
            yield bytes(self._buffer[self._pos :])
        self._buffer.clear()
        self._pos = 0
        while (payload := self._next_payload()) is not None:
            yield payload

    def _at_end(self) -> bool:
        while self._pos >= len(self._buffer):
            payload = self._next_payload()
            if payload is None:
                return True
            self._buffer = bytearray(payload)
            self._pos = 0
        return False

    def _read_exact(self, n: int) -> bytes:
        parts = []
        need = n
        while need:
            if self._at_end():
                raise BadEntry(f"stream ends inside an entry ({n - need} of {n} bytes)")
            take = min(need, len(self._buffer) - self._pos)
            parts.append(bytes(self._buffer[self._pos : self._pos + take]))
            self._pos += take
            need -= take
        self._offset += n
        return b"".join(parts)

    # --- blocks -----------------------------------------------------------

    def _read_raw(self) -> bytes:
        try:
            return self.drive.read(self.block_size)
        except BlockTooLarge as exc:
            if self._sequence or not exc.block_size:
                raise BadBlock(f"block {self._sequence} is not {self.block_size} bytes") from exc
            # The drive skipped the longer block; step back and read it whole.
            try:
                self.drive.space(SpaceCode.BLOCKS, -1)
            except WriteProtected:
                raise BadBlock(
                    f"the tape's blocks are {exc.block_size} bytes and this drive refuses to "
                    f"space back (tgt on a read-only drive); read with block_size="
                    f"{exc.block_size}, as the media label says"
                ) from exc
            self.block_size = check_block_size(exc.block_size)
            return self.drive.read(self.block_size)

    def _next_payload(self) -> bytes | None:
        """The next block's payload, or None after the end-of-stream block."""
        if self._ended:
            return None
        try:
            raw = self._read_raw()
        except FilemarkReached:
            self.filemark = True
            self._ended = True
            if not self._sequence:
                raise EmptyFile(
                    "an empty tape file: a filemark where its first block should be"
                ) from None
            raise TruncatedFile(
                f"tape file ends at a filemark after {self._sequence} blocks, "
                "without its end-of-stream block"
            ) from None
        except EndOfData:
            self._ended = True
            if not self._sequence:
                raise  # no tape file here at all: the end of recorded data
            raise TruncatedFile(
                f"end of data after {self._sequence} blocks of the tape file, "
                "without its end-of-stream block"
            ) from None
        block = decode_block(raw, expect_sequence=self._sequence)
        if self._sequence == 0:
            self.block_size = block.block_size
        self._sequence += 1
        base = block.flags & BlockFlags.CONTINUED_FROM_PREVIOUS
        if self._flags is None:
            self._flags = base
        elif base != self._flags:
            raise BadBlock(f"block {block.sequence}: continued-from flag differs from block 0")
        if not block.end_of_stream:
            if len(block.payload) != payload_capacity(block.block_size):
                raise BadBlock(f"block {block.sequence} is short but not the last one")
            return block.payload
        self._ended = True
        self.continues = bool(block.flags & BlockFlags.CONTINUES_ON_NEXT)
        header = getattr(self, "header", None)
        if self.continues and header is not None and header.kind not in ARCHIVE_KINDS:
            raise BadHeader(f"a {header.kind} file cannot continue on another volume")
        self._finish()
        if block.sequence and not block.payload:
            raise BadBlock(f"end-of-stream block {block.sequence} is empty")
        return block.payload

    def _finish(self) -> None:
        try:
            self.drive.read(self.block_size)
        except FilemarkReached:
            self.filemark = True
            return
        except EndOfData:
            # The stream is whole and verified; only the closing filemark is missing
            # (the writer stopped between the last block and the filemark).
            return
        raise BadBlock("a block follows the end-of-stream block before the filemark")

    def _check_flags_against_header(self) -> None:
        continued = self._flags == BlockFlags.CONTINUED_FROM_PREVIOUS
        is_cont = isinstance(self.header, ArchiveHeader) and self.header.continued
        if continued != is_cont:
            raise BadHeader(f"{self.header.kind} header and block flags disagree on continuation")
        if self.continues and self.header.kind not in ARCHIVE_KINDS:
            raise BadHeader(f"a {self.header.kind} file cannot continue on another volume")


def write_catalog(
    drive: DriveLike,
    header: CatalogHeader,
    records: Iterable[CatalogRecord],
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> FileSummary:
    """Write a catalog file describing ``records`` (the volume's files before it)."""
    with TapeFileWriter(drive, header, block_size) as writer:
        for record in records:
            writer.add_catalog_record(record)
        return writer.close()


# --- positioning --------------------------------------------------------------


def open_file(
    drive: DriveLike, file_number: int, block_size: int = DEFAULT_BLOCK_SIZE
) -> TapeFileReader:
    """Position at tape file ``file_number`` (``drive.locate_file``) and open a reader there.

    ``locate_file`` rewinds and spaces over filemarks where LOCATE is refused
    (tgt); EndOfData when the volume has fewer files.
    """
    locate(drive, file_number, block_size)
    return TapeFileReader(drive, block_size)


def skip_file(drive: DriveLike, block_size: int = DEFAULT_BLOCK_SIZE) -> None:
    """Move past the next filemark (EndOfData when there is none).

    SPACE where the drive allows it; tgt refuses every SPACE on a read-only
    drive (DATA PROTECT), so there the blocks are read and dropped instead.
    """
    try:
        drive.space(SpaceCode.FILEMARKS, 1)
        return
    except WriteProtected:
        pass
    while True:
        try:
            drive.read(block_size)
        except FilemarkReached:
            return
        except BlockTooLarge:
            continue  # a longer block is skipped by the read all the same


def locate(drive: DriveLike, file_number: int, block_size: int = DEFAULT_BLOCK_SIZE) -> None:
    """Position at the start of tape file ``file_number``; EndOfData past the last file.

    ``drive.locate_file`` (rewind, then SPACE over filemarks), or reading
    through the files before it where the drive refuses SPACE.
    """
    try:
        drive.locate_file(file_number)
    except WriteProtected:
        drive.rewind()
        for _ in range(file_number):
            skip_file(drive, block_size)


@dataclass(frozen=True)
class FileInfo:
    """One tape file found by ``scan_volume``: its header, or why it has none."""

    file_number: int
    header: FileHeader | None
    error: str | None = None


def scan_volume(drive: DriveLike, block_size: int = DEFAULT_BLOCK_SIZE) -> list[FileInfo]:
    """Read the header of every tape file on the volume, from BOT to end of data.

    Reads only the first block of each file and spaces over the rest, so it is
    quick even on a full tape. A file whose first block is not a valid header
    is listed with ``header`` None and the reason; the scan goes on past it.
    """
    drive.rewind()
    found: list[FileInfo] = []
    number = 0
    while True:
        reader: TapeFileReader | None = None
        try:
            reader = TapeFileReader(drive, block_size)
        except EndOfData:
            break
        except EmptyFile as exc:
            found.append(FileInfo(number, None, str(exc)))
            number += 1  # the read already went past its filemark
            continue
        except TapeFormatError as exc:
            found.append(FileInfo(number, None, str(exc)))
        else:
            found.append(FileInfo(number, reader.header))
            block_size = reader.block_size
        number += 1
        if reader is not None and reader.complete:
            # A one-block file: the reader already went past its filemark, if any.
            if not reader.filemark:
                break
            continue
        try:
            skip_file(drive, block_size)
        except EndOfData:
            break
    return found


def read_volume_catalog(
    drive: DriveLike, block_size: int = DEFAULT_BLOCK_SIZE
) -> tuple[VolumeCatalog, list[FileInfo]]:
    """The last catalog on the volume, and the scan of every file's header.

    Files after that catalog (a session that ended before writing its own)
    are in the scan but not in the catalog. Raises TapeFormatError when the
    volume holds no readable catalog.
    """
    files = scan_volume(drive, block_size)
    catalogs = [f for f in files if f.header is not None and f.header.kind == FileKind.CATALOG]
    if not catalogs:
        raise TapeFormatError("no catalog file on this volume")
    last = catalogs[-1]
    reader = open_file(drive, last.file_number, block_size)
    catalog = reader.catalog()
    if catalog.header.file_number != last.file_number:
        raise BadHeader(
            f"catalog at file {last.file_number} says it is file {catalog.header.file_number}"
        )
    return catalog, files


def append_position(drive: DriveLike, block_size: int = DEFAULT_BLOCK_SIZE) -> int:
    """Position just after the last tape file to append; returns the next file number.

    Counts the files by scanning their headers, then ``locate_file(count)``
    so that the drive knows the file number (after SPACE to end of data it
    would not). Raises TruncatedFile when the last file has no filemark: the
    writer of that file stopped in the middle, and appending right after it
    would merge two files.
    """
    count = len(scan_volume(drive, block_size))
    try:
        locate(drive, count, block_size)
    except EndOfData:
        raise TruncatedFile(
            f"tape file {count - 1} has no closing filemark; refusing to append after it"
        ) from None
    return count
