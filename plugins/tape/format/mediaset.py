"""Reconstructing a media set from the catalogs of its volumes, without a database.

Each volume's last catalog lists its tape files; joined in volume order they
say where every archive part, chunk and manifest of the set is, and whether an
archive that spans volumes is whole.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .catalog import VolumeCatalog
from .errors import ContinuationMismatch
from .files import FileKind


@dataclass(frozen=True)
class Location:
    """Where an entry is: volume sequence number, tape file number, byte offset in its stream."""

    volume_seq: int
    file_number: int
    offset: int


@dataclass(frozen=True)
class ArchivePart:
    """One part of an archive: on which volume and tape file it lies."""

    volume_seq: int
    file_number: int
    part: int
    continues: bool


@dataclass
class MediaSetIndex:
    """What a media set holds, assembled from volume catalogs."""

    media_set: str
    volumes: dict[int, str] = field(default_factory=dict)
    archives: dict[str, list[ArchivePart]] = field(default_factory=dict)
    archive_kinds: dict[str, FileKind] = field(default_factory=dict)
    chunks: dict[bytes, Location] = field(default_factory=dict)
    manifests: dict[str, Location] = field(default_factory=dict)

    def missing_volumes(self) -> list[int]:
        """Volume sequence numbers below the highest one given that are absent."""
        top = max(self.volumes, default=-1)
        return [seq for seq in range(top + 1) if seq not in self.volumes]

    def incomplete_archives(self) -> list[str]:
        """Archives whose last known part says it continues on a volume not given."""
        return [uuid for uuid, parts in self.archives.items() if parts[-1].continues]


def build_index(catalogs: Iterable[VolumeCatalog]) -> MediaSetIndex:
    """Join the catalogs of one media set's volumes (in any order) into one index.

    Raises ContinuationMismatch when the catalogs belong to different media
    sets, a volume appears twice, or an archive's parts do not follow each
    other (a part missing, repeated, or a part before the last one that does
    not say it continues).
    """
    ordered = sorted(catalogs, key=lambda c: c.header.volume_seq or 0)
    if not ordered:
        raise ValueError("no catalogs given")
    index = MediaSetIndex(media_set=ordered[0].header.media_set or "")
    for cat in ordered:
        head = cat.header
        seq = head.volume_seq if head.volume_seq is not None else -1
        if head.media_set != index.media_set:
            raise ContinuationMismatch(
                f"volume {head.volume} belongs to media set {head.media_set}, not {index.media_set}"
            )
        if seq in index.volumes:
            raise ContinuationMismatch(f"two catalogs for volume {seq} of the media set")
        index.volumes[seq] = head.volume
        for rec in cat.records:
            if rec.archive is None or rec.part is None:
                continue
            parts = index.archives.setdefault(rec.archive, [])
            previous = parts[-1] if parts else None
            if previous is None and rec.part != 0 and seq - 1 in index.volumes:
                raise ContinuationMismatch(
                    f"archive {rec.archive} starts with part {rec.part} on volume {seq}"
                )
            if previous is not None and (rec.part != previous.part + 1 or not previous.continues):
                raise ContinuationMismatch(
                    f"archive {rec.archive}: part {rec.part} on volume {seq} does not "
                    f"follow part {previous.part} on volume {previous.volume_seq}"
                )
            parts.append(ArchivePart(seq, rec.file_number, rec.part, rec.continues))
            index.archive_kinds[rec.archive] = rec.kind
            for cid, off in rec.chunks:
                index.chunks.setdefault(cid, Location(seq, rec.file_number, off))
            for name, off in rec.manifests:
                index.manifests[name] = Location(seq, rec.file_number, off)
    return index
