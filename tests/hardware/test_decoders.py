"""TapeAlert, MAM, density and encryption pages: decoded from sample bytes, and
refused cleanly by tgt, which implements none of them."""

from __future__ import annotations

import pytest

from tapir.hardware.density import decode_density_support, report_density_support
from tapir.hardware.drive import TapeDrive
from tapir.hardware.encryption import (
    build_set_encryption,
    decode_status,
    encryption_status,
    set_encryption,
)
from tapir.hardware.errors import UnsupportedCommand
from tapir.hardware.mam import decode_attributes, read_attributes
from tapir.hardware.tapealert import decode_tapealert, read_tapealert


def _param(code: int, value: int) -> bytes:
    return code.to_bytes(2, "big") + bytes([0x03, 1, value])


def test_tapealert_active_flags_only() -> None:
    params = b"".join(_param(c, 1 if c in (3, 20) else 0) for c in range(1, 65))
    page = bytes([0x2E, 0]) + len(params).to_bytes(2, "big") + params
    alerts = decode_tapealert(page)
    assert [a.flag for a in alerts] == [3, 20]
    assert alerts[1].message.startswith("clean now")
    with pytest.raises(ValueError):
        decode_tapealert(bytes([0x0D, 0, 0, 0]))


def test_mam_attributes() -> None:
    attrs = (
        bytes([0x00, 0x00, 0x80, 0, 8])
        + (1_234_567).to_bytes(8, "big")
        + bytes([0x04, 0x01, 0x81, 0, 10])
        + b"AB12345   "
        + bytes([0x08, 0x06, 0x01, 0, 32])
        + b"TAP001L8".ljust(32)
    )
    data = len(attrs).to_bytes(4, "big") + attrs
    got = {a.id: a for a in decode_attributes(data)}
    assert got[0].value == 1_234_567 and got[0].read_only
    assert got[0x0401].value == "AB12345" and got[0x0806].value == "TAP001L8"
    assert got[0x0806].name == "barcode" and not got[0x0806].read_only
    with pytest.raises(ValueError, match="truncated"):
        decode_attributes((20).to_bytes(4, "big") + bytes([0x04, 0x01, 0x01, 0, 30]) + b"x" * 15)


def test_density_descriptors() -> None:
    desc = bytes([0x5E, 0x5E, 0xA0, 0, 0]) + bytes(5) + (6656).to_bytes(2, "big")
    desc += (12_000_000).to_bytes(4, "big") + b"LTO-CVE " + b"U-832   " + b"Ultrium 8/16T".ljust(20)
    data = (2 + len(desc)).to_bytes(2, "big") + bytes(2) + desc
    (d,) = decode_density_support(data)
    assert (d.primary_code, d.writable, d.default, d.capacity_mb, d.name) == (
        0x5E,
        True,
        True,
        12_000_000,
        "U-832",
    )
    with pytest.raises(ValueError, match="inside a descriptor"):
        decode_density_support((30).to_bytes(2, "big") + bytes(30))


def test_encryption_pages() -> None:
    key = bytes(range(32))
    page = build_set_encryption(key)
    assert page[:2] == b"\x00\x10" and int.from_bytes(page[2:4], "big") == len(page) - 4
    assert page[6:8] == b"\x02\x02" and page[-32:] == key
    off = build_set_encryption(None)
    assert off[6:8] == b"\x00\x00" and off.endswith(b"\x00\x00")
    with pytest.raises(ValueError, match="256-bit"):
        build_set_encryption(b"short")
    status = bytes([0x00, 0x20, 0x00, 0x10, 0x40, 0x02, 0x02, 0x01, 0, 0, 0, 7]) + bytes(8)
    st = decode_status(status)
    assert (st.encryption_mode, st.decryption_mode, st.key_instance) == ("encrypt", "decrypt", 7)
    # The two directions have their own SSC tables: decryption 3 is MIXED, 1 is RAW.
    mixed = decode_status(status[:5] + bytes([0x00, 0x03]) + status[7:])
    assert (mixed.encryption_mode, mixed.decryption_mode) == ("disabled", "mixed")
    raw = decode_status(status[:5] + bytes([0x01, 0x01]) + status[7:])
    assert (raw.encryption_mode, raw.decryption_mode) == ("external", "raw")


def test_tgt_refuses_all_of_them_cleanly(loaded_drive: TapeDrive) -> None:
    t = loaded_drive.transport
    for call in (
        lambda: read_tapealert(t),
        lambda: read_attributes(t),
        lambda: report_density_support(t),
        lambda: encryption_status(t),
        lambda: set_encryption(t, bytes(32)),
    ):
        with pytest.raises(UnsupportedCommand):
            call()
    loaded_drive.write(b"still fine")  # a refusal leaves the drive usable
