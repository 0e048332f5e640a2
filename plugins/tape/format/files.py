"""Tape file kinds and the header every tape file starts with.

A tape file is a stream of blocks ended by a filemark. Its stream starts with
one header record: a 4-byte big-endian length and a msgpack map. The map names
the file's kind, its media set and the volume's sequence number in that set, so
a reader that lands on any file knows what it holds; the other keys depend on
the kind. The header must fit in the payload of the file's first block.
"""

from __future__ import annotations

import re
import struct
import uuid
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

import msgpack

from .errors import BadHeader, UnsupportedVersion

FORMAT_NAME = "tapir-tape"
FORMAT_VERSION = 1
MAX_HEADER_SIZE = 64 * 1024
_LENGTH = struct.Struct(">I")
_UUID_HEX = re.compile(r"[0-9a-f]{32}")


class FileKind(StrEnum):
    """What a tape file holds."""

    MEDIA_LABEL = "media-label"
    MEDIA_SET_LABEL = "media-set-label"
    CHUNK_ARCHIVE = "chunk-archive"
    MANIFEST_ARCHIVE = "manifest-archive"
    CATALOG = "catalog"


ARCHIVE_KINDS = frozenset({FileKind.CHUNK_ARCHIVE, FileKind.MANIFEST_ARCHIVE})


def new_uuid() -> str:
    """A random UUID in the format's spelling: 32 lowercase hex digits."""
    return uuid.uuid4().hex


def utc_now() -> str:
    """The current time in the format's spelling: ISO 8601 UTC, seconds."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def _check_uuid(name: str, value: object, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not _UUID_HEX.fullmatch(value):
        raise ValueError(f"{name} must be a UUID as 32 lowercase hex digits, not {value!r}")


def _check_int(name: str, value: object, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, not {value!r}")


def _check_str(name: str, value: object, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, not {value!r}")


@dataclass(frozen=True)
class FileHeader:
    """Fields every tape file header has; subclasses add their kind's fields."""

    kind: ClassVar[FileKind]
    media_set: str | None
    volume_seq: int | None

    def __post_init__(self) -> None:
        _check_uuid("media_set", self.media_set, optional=True)
        _check_int("volume_seq", self.volume_seq, optional=True)

    def to_map(self) -> dict[str, Any]:
        """The header as the msgpack map written to tape."""
        body = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "kind": str(self.kind)}
        body.update(asdict(self))
        return body

    def encode(self) -> bytes:
        """The header record: 4-byte big-endian length, then the msgpack map."""
        packed = msgpack.packb(self.to_map(), use_bin_type=True)
        if len(packed) > MAX_HEADER_SIZE:
            raise ValueError(f"tape file header of {len(packed)} bytes is too large")
        return _LENGTH.pack(len(packed)) + packed


@dataclass(frozen=True)
class MediaLabel(FileHeader):
    """File 0 of every volume: who the cartridge is. Written when it is labelled."""

    kind: ClassVar[FileKind] = FileKind.MEDIA_LABEL
    barcode: str
    volume: str
    pool: str | None
    created_at: str
    block_size: int

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_str("barcode", self.barcode)
        _check_uuid("volume", self.volume)
        _check_str("pool", self.pool, optional=True)
        _check_str("created_at", self.created_at)
        _check_int("block_size", self.block_size)
        if self.media_set is not None or self.volume_seq is not None:
            raise ValueError("a media label belongs to no media set")


@dataclass(frozen=True)
class MediaSetLabel(FileHeader):
    """File 1: the media set this volume belongs to and its place in the set."""

    kind: ClassVar[FileKind] = FileKind.MEDIA_SET_LABEL
    volume: str
    pool: str
    set_created_at: str
    key_fingerprint: str | None
    created_at: str

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_uuid("media_set", self.media_set)
        _check_int("volume_seq", self.volume_seq)
        _check_uuid("volume", self.volume)
        _check_str("pool", self.pool)
        _check_str("set_created_at", self.set_created_at)
        _check_str("key_fingerprint", self.key_fingerprint, optional=True)
        _check_str("created_at", self.created_at)


@dataclass(frozen=True)
class ArchiveHeader(FileHeader):
    """Common header of chunk and manifest archives (one part of an archive).

    ``archive`` names the archive across volumes; ``part`` counts from 0 and
    grows by one on each volume the archive continues on. ``session`` is the
    writing session and ``session_seq`` the archive's number within it.
    """

    archive: str
    part: int
    session: str
    session_seq: int
    created_at: str

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_uuid("media_set", self.media_set)
        _check_int("volume_seq", self.volume_seq)
        _check_uuid("archive", self.archive)
        _check_int("part", self.part)
        _check_uuid("session", self.session)
        _check_int("session_seq", self.session_seq)
        _check_str("created_at", self.created_at)

    @property
    def continued(self) -> bool:
        """This part continues the archive from the previous volume."""
        return self.part > 0

    def next_part(self, volume_seq: int) -> ArchiveHeader:
        """The header of the part that continues this archive on volume ``volume_seq``."""
        if self.volume_seq is not None and volume_seq <= self.volume_seq:
            raise ValueError(
                f"the next part goes on a later volume than {self.volume_seq}, not {volume_seq}"
            )
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(part=self.part + 1, volume_seq=volume_seq, created_at=utc_now())
        return type(self)(**values)


@dataclass(frozen=True)
class ChunkArchiveHeader(ArchiveHeader):
    """A chunk archive: entries of chunk id, sealed blob length and blob."""

    kind: ClassVar[FileKind] = FileKind.CHUNK_ARCHIVE


@dataclass(frozen=True)
class ManifestArchiveHeader(ArchiveHeader):
    """A manifest archive: recovery point manifests by name, as sealed blobs."""

    kind: ClassVar[FileKind] = FileKind.MANIFEST_ARCHIVE


@dataclass(frozen=True)
class CatalogHeader(FileHeader):
    """A catalog file, written at the end of a session: the volume's table of contents.

    ``file_number`` is this catalog's own tape file number, so a reader that
    found it by spacing from the end of data knows where it is.
    """

    kind: ClassVar[FileKind] = FileKind.CATALOG
    volume: str
    session: str
    file_number: int
    created_at: str

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_uuid("media_set", self.media_set)
        _check_int("volume_seq", self.volume_seq)
        _check_uuid("volume", self.volume)
        _check_uuid("session", self.session)
        _check_int("file_number", self.file_number)
        _check_str("created_at", self.created_at)


HEADER_CLASSES: dict[FileKind, type[FileHeader]] = {
    cls.kind: cls
    for cls in (
        MediaLabel,
        MediaSetLabel,
        ChunkArchiveHeader,
        ManifestArchiveHeader,
        CatalogHeader,
    )
}


def header_from_map(body: object) -> FileHeader:
    """Build the header object from a decoded msgpack map; BadHeader when invalid.

    Unknown keys are ignored (a later minor revision may add some); a format
    name or version other than this one's is refused.
    """
    if not isinstance(body, dict):
        raise BadHeader(f"tape file header is a {type(body).__name__}, not a map")
    if body.get("format") != FORMAT_NAME:
        raise BadHeader(f"not a Tapir tape file header (format {body.get('format')!r})")
    if body.get("version") != FORMAT_VERSION:
        raise UnsupportedVersion(f"tape format version {body.get('version')!r} (reader knows 1)")
    try:
        kind = FileKind(body.get("kind"))
    except ValueError:
        raise BadHeader(f"unknown tape file kind {body.get('kind')!r}") from None
    cls = HEADER_CLASSES[kind]
    names = [f.name for f in fields(cls)]
    missing = [n for n in names if n not in body]
    if missing:
        raise BadHeader(f"{kind} header lacks {', '.join(missing)}")
    try:
        return cls(**{n: body[n] for n in names})
    except (TypeError, ValueError) as exc:
        raise BadHeader(f"{kind} header: {exc}") from None


def decode_header(record: bytes | bytearray | memoryview) -> tuple[FileHeader, int]:
    """Decode the header record at the start of a tape file's stream.

    Returns the header and the number of bytes it took (length prefix included).
    Raises BadHeader when the record is cut short or not a valid header.
    """
    view = memoryview(record)
    if len(view) < _LENGTH.size:
        raise BadHeader("tape file stream too short for its header length")
    (length,) = _LENGTH.unpack_from(view, 0)
    if length > MAX_HEADER_SIZE:
        raise BadHeader(f"tape file header claims {length} bytes (at most {MAX_HEADER_SIZE})")
    end = _LENGTH.size + length
    if len(view) < end:
        raise BadHeader(f"tape file header cut short ({len(view) - 4} of {length} bytes)")
    try:
        body = msgpack.unpackb(view[_LENGTH.size : end], raw=False, strict_map_key=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise BadHeader(f"tape file header is not valid msgpack: {exc}") from None
    return header_from_map(body), end
