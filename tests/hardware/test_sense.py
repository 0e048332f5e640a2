"""Sense decoding on bytes captured from tgt and on descriptor-format samples."""

from __future__ import annotations

import pytest

from tapir.hardware.errors import (
    IllegalRequest,
    MediumNotPresent,
    UnitAttention,
    UnsupportedCommand,
    WriteProtected,
    error_for,
)
from tapir.hardware.sense import SenseFormatError, SenseKey, decode_sense

# Captured from tgt 1.0.85 over libiscsi.
ILI_SHORT = bytes.fromhex("f00020000003e80a00000000000000000000")  # 2000 asked, 1000 read
ILI_LONG = bytes.fromhex("f00020ffffecdc0a00000000000000000000")  # 100 asked, 5000 on tape
FILEMARK = bytes.fromhex("f00080000000640a00000000000100000000")
END_OF_DATA = bytes.fromhex("700048000000000a00000000000000000000")
EARLY_WARNING = bytes.fromhex("700040000000000a00000000000000000000")
NO_MEDIUM = bytes.fromhex("700002000000000a000000003a0000000000")
UNSUPPORTED = bytes.fromhex("700005000000000a00000000200000000000")
DEST_FULL = bytes.fromhex("700005000000000a000000003b0d00000000")


def test_ili_short_block_reports_residue() -> None:
    s = decode_sense(ILI_SHORT)
    assert (s.key, s.ili, s.filemark, s.eom, s.information) == (
        SenseKey.NO_SENSE,
        True,
        False,
        False,
        1000,
    )


def test_ili_long_block_reports_negative_residue() -> None:
    assert decode_sense(ILI_LONG).information == -4900


def test_filemark_end_of_data_and_early_warning_are_distinct() -> None:
    fm, eod, ew = decode_sense(FILEMARK), decode_sense(END_OF_DATA), decode_sense(EARLY_WARNING)
    assert fm.filemark and not fm.eom and (fm.asc, fm.ascq) == (0, 1) and fm.information == 100
    assert eod.key == SenseKey.BLANK_CHECK and eod.eom and eod.information is None
    assert ew.key == SenseKey.NO_SENSE and ew.eom and not ew.filemark
    assert "FM" in str(fm) and "EOM" in str(ew)


def test_descriptor_format_with_information_and_stream_descriptors() -> None:
    raw = bytes([0x72, 0x00, 0x00, 0x01, 0, 0, 0, 0x12])
    raw += bytes([0x00, 0x0A, 0x80, 0x00]) + (7).to_bytes(8, "big")
    raw += bytes([0x04, 0x02, 0x00, 0xA0])
    s = decode_sense(raw)
    assert (s.key, s.asc, s.ascq, s.information, s.filemark, s.eom, s.ili) == (
        SenseKey.NO_SENSE,
        0,
        1,
        7,
        True,
        False,
        True,
    )


def test_deferred_and_unknown_asc_text() -> None:
    s = decode_sense(bytes([0x71, 0, 0x04, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x99, 0x42]))
    assert s.deferred and s.key == SenseKey.HARDWARE_ERROR
    assert s.description == "asc/ascq 99/42"


@pytest.mark.parametrize("raw", [b"", b"\x70", bytes([0x7F, 0, 0, 0])])
def test_garbage_is_refused(raw: bytes) -> None:
    with pytest.raises(SenseFormatError):
        decode_sense(raw)


def test_truncated_fixed_sense_still_decodes_key() -> None:
    assert decode_sense(bytes([0x70, 0, 0x06])).key == SenseKey.UNIT_ATTENTION


def test_errors_map_to_specific_classes() -> None:
    assert isinstance(error_for("TUR", decode_sense(NO_MEDIUM)), MediumNotPresent)
    assert isinstance(error_for("LOCATE", decode_sense(UNSUPPORTED)), UnsupportedCommand)
    assert isinstance(error_for("MOVE", decode_sense(DEST_FULL)), IllegalRequest)
    wp = bytes.fromhex("700007000000000a00000000270000000000")
    assert isinstance(error_for("WRITE", decode_sense(wp)), WriteProtected)
    ua = bytes.fromhex("700006000000000a00000000280000000000")
    err = error_for("READ", decode_sense(ua))
    assert isinstance(err, UnitAttention) and "medium may have changed" in str(err)
