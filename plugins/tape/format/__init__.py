"""The Tapir tape format: blocks, tape files, labels, archives and the on-tape catalog.

Pure encoding and decoding; no I/O. The specification is docs/format/tape.md.
"""

from .blocks import (
    DEFAULT_BLOCK_SIZE,
    HEADER_SIZE,
    MAX_BLOCK_SIZE,
    MIN_BLOCK_SIZE,
    Block,
    BlockFlags,
    decode_block,
    encode_block,
    payload_capacity,
)
from .catalog import CatalogRecord, VolumeCatalog
from .entries import ChunkEntry, ManifestEntry
from .errors import (
    BadBlock,
    BadChecksum,
    BadEntry,
    BadHeader,
    BadMagic,
    ContinuationMismatch,
    SequenceGap,
    TapeFormatError,
    TruncatedFile,
    UnsupportedVersion,
    WrongFileKind,
)
from .files import (
    FORMAT_VERSION,
    ArchiveHeader,
    CatalogHeader,
    ChunkArchiveHeader,
    FileHeader,
    FileKind,
    ManifestArchiveHeader,
    MediaLabel,
    MediaSetLabel,
    decode_header,
    new_uuid,
    utc_now,
)
from .mediaset import ArchivePart, Location, MediaSetIndex, build_index

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "MAX_BLOCK_SIZE",
    "MIN_BLOCK_SIZE",
    "ArchiveHeader",
    "ArchivePart",
    "BadBlock",
    "BadChecksum",
    "BadEntry",
    "BadHeader",
    "BadMagic",
    "Block",
    "BlockFlags",
    "CatalogHeader",
    "CatalogRecord",
    "ChunkArchiveHeader",
    "ChunkEntry",
    "ContinuationMismatch",
    "FileHeader",
    "FileKind",
    "Location",
    "ManifestArchiveHeader",
    "ManifestEntry",
    "MediaLabel",
    "MediaSetIndex",
    "MediaSetLabel",
    "SequenceGap",
    "TapeFormatError",
    "TruncatedFile",
    "UnsupportedVersion",
    "VolumeCatalog",
    "WrongFileKind",
    "build_index",
    "decode_block",
    "decode_header",
    "encode_block",
    "new_uuid",
    "payload_capacity",
    "utc_now",
]
