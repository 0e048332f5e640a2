"""The on-tape catalog: one record per tape file of the volume, so a tape reads without a database.

A catalog file's stream is its header record followed by a sequence of msgpack
maps, one per tape file that precedes the catalog on the volume, in file order.
Each session ends with a catalog describing the whole volume up to it, so the
last catalog on a volume is enough.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgpack

from .entries import CHUNK_ID_SIZE
from .errors import BadHeader
from .files import ARCHIVE_KINDS, ArchiveHeader, CatalogHeader, FileHeader, FileKind


@dataclass(frozen=True)
class CatalogRecord:
    """What the catalog says about one tape file.

    Archives carry their identity and contents: for a chunk archive every chunk
    id with the byte offset of its entry in this part's stream, for a manifest
    archive every manifest name with its offset. ``continues`` says the archive
    goes on in the next volume of the media set.
    """

    file_number: int
    kind: FileKind
    archive: str | None = None
    part: int | None = None
    session: str | None = None
    session_seq: int | None = None
    continues: bool = False
    chunks: list[tuple[bytes, int]] = field(default_factory=list)
    manifests: list[tuple[str, int]] = field(default_factory=list)

    @classmethod
    def for_file(
        cls,
        file_number: int,
        header: FileHeader,
        *,
        continues: bool = False,
        chunks: Iterable[tuple[bytes, int]] = (),
        manifests: Iterable[tuple[str, int]] = (),
    ) -> CatalogRecord:
        """The record of a tape file from its header and what was written into it."""
        if isinstance(header, ArchiveHeader):
            return cls(
                file_number=file_number,
                kind=header.kind,
                archive=header.archive,
                part=header.part,
                session=header.session,
                session_seq=header.session_seq,
                continues=continues,
                chunks=list(chunks),
                manifests=list(manifests),
            )
        session = header.session if isinstance(header, CatalogHeader) else None
        return cls(file_number=file_number, kind=header.kind, session=session)

    def to_map(self) -> dict[str, Any]:
        """The record as the msgpack map written to tape."""
        body: dict[str, Any] = {"file": self.file_number, "kind": str(self.kind)}
        if self.session is not None:
            body["session"] = self.session
        if self.kind in ARCHIVE_KINDS:
            body.update(
                archive=self.archive,
                part=self.part,
                session_seq=self.session_seq,
                continues=self.continues,
            )
        if self.kind == FileKind.CHUNK_ARCHIVE:
            body["chunks"] = [[cid, off] for cid, off in self.chunks]
        if self.kind == FileKind.MANIFEST_ARCHIVE:
            body["manifests"] = [[name, off] for name, off in self.manifests]
        return body

    def encode(self) -> bytes:
        """The packed msgpack map."""
        return msgpack.packb(self.to_map(), use_bin_type=True)

    @classmethod
    def from_map(cls, body: object) -> CatalogRecord:
        """Decode and validate one record; BadHeader when malformed."""
        if not isinstance(body, dict):
            raise BadHeader(f"catalog record is a {type(body).__name__}, not a map")
        try:
            number = body["file"]
            kind = FileKind(body["kind"])
            if not isinstance(number, int) or number < 0:
                raise ValueError(f"file number {number!r}")
            session = body.get("session")
            record = cls(
                file_number=number,
                kind=kind,
                session=None if session is None else _typed(session, str),
            )
            if kind in ARCHIVE_KINDS:
                record = cls(
                    file_number=number,
                    kind=kind,
                    archive=_typed(body["archive"], str),
                    part=_typed(body["part"], int),
                    session=_typed(body["session"], str),
                    session_seq=_typed(body["session_seq"], int),
                    continues=_typed(body["continues"], bool),
                    chunks=_chunk_list(body.get("chunks", [])),
                    manifests=_manifest_list(body.get("manifests", [])),
                )
        except KeyError as exc:
            raise BadHeader(f"catalog record lacks {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise BadHeader(f"catalog record is malformed: {exc}") from None
        return record


def _typed(value: object, kind: type) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"{value!r} is not a {kind.__name__}")
    return value


def _chunk_list(value: object) -> list[tuple[bytes, int]]:
    out = []
    for item in _typed(value, list):
        cid, off = _typed(item, list)
        if not isinstance(cid, bytes) or len(cid) != CHUNK_ID_SIZE:
            raise ValueError("a chunk id in the catalog is not 32 bytes")
        out.append((cid, _typed(off, int)))
    return out


def _manifest_list(value: object) -> list[tuple[str, int]]:
    return [(_typed(n, str), _typed(o, int)) for n, o in (_typed(i, list) for i in value)]


@dataclass
class VolumeCatalog:
    """A decoded catalog file: its header and the records of the files before it."""

    header: CatalogHeader
    records: list[CatalogRecord]

    def record(self, file_number: int) -> CatalogRecord:
        """The record of one tape file; KeyError when the catalog has none."""
        for rec in self.records:
            if rec.file_number == file_number:
                return rec
        raise KeyError(file_number)

    def chunk_locations(self) -> dict[bytes, tuple[int, int]]:
        """Every chunk id on this volume with (tape file number, offset in the stream)."""
        return {cid: (rec.file_number, off) for rec in self.records for cid, off in rec.chunks}

    def manifest_names(self) -> list[str]:
        """Names of every manifest on this volume, in tape order."""
        return [name for rec in self.records for name, _ in rec.manifests]


def decode_records(payloads: Iterable[bytes], header: CatalogHeader) -> Iterator[CatalogRecord]:
    """Decode the records that follow a catalog header, fed block payload by payload.

    Records must be in increasing file order and precede the catalog itself;
    BadHeader otherwise or when the stream ends inside a record.
    """
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=True, max_buffer_size=1 << 30)
    last = -1
    fed = 0
    for data in payloads:
        unpacker.feed(data)
        fed += len(data)
        try:
            for body in unpacker:
                record = CatalogRecord.from_map(body)
                if not last < record.file_number < header.file_number:
                    raise BadHeader(
                        f"catalog record for file {record.file_number} out of order "
                        f"(after {last}, catalog is file {header.file_number})"
                    )
                last = record.file_number
                yield record
        except ValueError as exc:  # msgpack's FormatError and StackError included
            raise BadHeader(f"catalog stream is not valid msgpack: {exc}") from None
    if unpacker.tell() != fed:
        raise BadHeader("catalog stream ends inside a record")
