"""Writing whole volumes the way the tape MediaStore will: labels, archives, spanning, catalog."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from tapir.hardware.errors import EarlyWarning
from tapir.plugins.tape.blockio import DriveLike, FileSummary, TapeFileWriter, write_catalog
from tapir.plugins.tape.format import (
    CatalogHeader,
    CatalogRecord,
    ChunkArchiveHeader,
    MediaLabel,
    MediaSetLabel,
    new_uuid,
    utc_now,
)


def chunk(i: int, size: int = 0) -> tuple[bytes, bytes]:
    """A deterministic (chunk id, blob) pair; ``size`` 0 picks a size from ``i``."""
    blob = hashlib.shake_256(i.to_bytes(8, "big")).digest(size or 100 + (i * 7919) % 9000)
    return hashlib.blake2b(blob, digest_size=32).digest(), blob


def chunks(n: int, size: int = 0) -> list[tuple[bytes, bytes]]:
    """``n`` distinct chunks."""
    return [chunk(i, size) for i in range(n)]


@dataclass
class Volume:
    """A cartridge being written: its drive, identity and the records for its catalog."""

    drive: DriveLike
    barcode: str
    media_set: str
    seq: int
    block_size: int
    volume: str = field(default_factory=new_uuid)
    records: list[CatalogRecord] = field(default_factory=list)
    next_file: int = 0

    def label(self, pool: str = "tape1") -> None:
        """Write the media label and the media-set label at BOT."""
        self.drive.rewind()
        label = MediaLabel(None, None, self.barcode, self.volume, pool, utc_now(), self.block_size)
        set_label = MediaSetLabel(
            self.media_set, self.seq, self.volume, pool, utc_now(), None, utc_now()
        )
        for header in (label, set_label):
            summary = TapeFileWriter(self.drive, header, self.block_size).close()
            self.add(summary)

    def add(self, summary: FileSummary) -> None:
        """Note a written file for the catalog."""
        assert summary.file_number == self.next_file, (summary.file_number, self.next_file)
        self.records.append(summary.catalog_record())
        self.next_file += 1

    def finish(self, session: str) -> FileSummary:
        """Write the session's catalog file."""
        header = CatalogHeader(
            self.media_set, self.seq, self.volume, session, self.next_file, utc_now()
        )
        summary = write_catalog(self.drive, header, self.records, self.block_size)
        self.records.append(summary.catalog_record())
        self.next_file += 1
        return summary


def write_spanning(
    volumes: Iterator[Volume], entries: Iterable[tuple[bytes, bytes]], session: str
) -> tuple[list[Volume], list[FileSummary]]:
    """Write one chunk archive, continuing it on the next volume at each early warning."""
    vol = next(volumes)
    used = [vol]
    header = ChunkArchiveHeader(vol.media_set, vol.seq, new_uuid(), 0, session, 0, utc_now())
    writer = TapeFileWriter(vol.drive, header, vol.block_size)
    parts = []
    for chunk_id, blob in entries:
        try:
            writer.add_chunk(chunk_id, blob)
        except EarlyWarning:
            summary = writer.close(continues=True)
            vol.add(summary)
            parts.append(summary)
            vol.finish(session)
            vol = next(volumes)
            used.append(vol)
            header = header.next_part(vol.seq)
            writer = TapeFileWriter(vol.drive, header, vol.block_size)
    summary = writer.close()
    vol.add(summary)
    parts.append(summary)
    vol.finish(session)
    return used, parts
