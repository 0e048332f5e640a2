"""Errors of the tape format: what is wrong with bytes read from a tape."""

from __future__ import annotations

from tapir.appliance.plugin_api import TapirError


class TapeFormatError(TapirError):
    """Bytes read from a tape are not a valid Tapir tape format structure."""


class BadMagic(TapeFormatError):
    """The block does not start with the Tapir block magic (not a Tapir tape?)."""


class UnsupportedVersion(TapeFormatError):
    """The block or header was written by a format version this reader does not know."""


class BadChecksum(TapeFormatError):
    """The block's checksum does not match its contents: the block is damaged."""


class BadBlock(TapeFormatError):
    """A block header field is impossible (length, reserved bits, size)."""


class SequenceGap(TapeFormatError):
    """A block's sequence number is not the next one: a block was lost or repeated."""


class TruncatedFile(TapeFormatError):
    """The tape file ended (filemark or end of data) before its end-of-stream block."""


class BadHeader(TapeFormatError):
    """A tape file header or catalog record is missing a field or has a wrong type."""


class BadEntry(TapeFormatError):
    """An archive entry is malformed or cut short."""


class WrongFileKind(TapeFormatError):
    """The tape file is not of the kind the caller asked for."""


class ContinuationMismatch(TapeFormatError):
    """A continuation part does not follow the part before it (archive, part, media set)."""
