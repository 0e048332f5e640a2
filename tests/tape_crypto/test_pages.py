"""SECURITY PROTOCOL IN/OUT commands and the tape data encryption pages, byte by byte.

Layouts from SPC-4 "SECURITY PROTOCOL IN command" / "SECURITY PROTOCOL OUT
command" and SSC-4 "Tape Data Encryption security protocol": the Tape Data
Encryption In Support page (0000h), the Data Encryption Capabilities page
(0010h), the Set Data Encryption page (SPOUT 0010h) and the Data Encryption
Status page (0020h).
"""

from __future__ import annotations

import pytest

from tapir.appliance.plugin_api import TapirError
from tapir.hardware import cdb
from tapir.hardware.encryption import (
    AES256_GCM,
    build_set_encryption,
    decode_capabilities,
    decode_in_support,
    decode_status,
)
from tapir.plugins.tape.options import PoolSettings

from .conftest import SetPage, capabilities_page, in_support_page


def test_security_protocol_cdbs() -> None:
    # SPC-4: opcode, protocol, protocol specific (2), INC_512/reserved, reserved,
    # allocation / transfer length (4), reserved, control.
    spin = cdb.security_protocol_in(0x20, 0x0010, 0x2000)
    assert spin == bytes([0xA2, 0x20, 0x00, 0x10, 0, 0, 0x00, 0x00, 0x20, 0x00, 0, 0])
    spout = cdb.security_protocol_out(0x20, 0x0010, 52)
    assert spout == bytes([0xB5, 0x20, 0x00, 0x10, 0, 0, 0, 0, 0, 52, 0, 0])


def test_set_data_encryption_page_layout() -> None:
    key = bytes(range(100, 132))
    page = build_set_encryption(key, 0x07, read_mixed=True)
    # Page code 0010h, page length n-3, SCOPE in byte 4 bits 7-5 (ALL I_T NEXUS = 2),
    # CKORL byte 5 bit 0, encryption mode byte 6 (ENCRYPT = 2), decryption mode byte 7
    # (MIXED = 3), algorithm index byte 8, key format byte 9 (plain = 0), KAD format
    # byte 10, reserved 11-17, key length 18-19, key from byte 20.
    assert len(page) == 20 + 32
    assert page[0:4] == b"\x00\x10\x00\x30"
    assert page[4] == 0x40 and page[5] == 0x01
    assert page[6:10] == bytes([2, 3, 0x07, 0])
    assert page[10:18] == bytes(8)
    assert page[18:20] == b"\x00\x20" and page[20:] == key
    decoded = SetPage.decode(page)
    assert (decoded.scope, decoded.ckorl, decoded.key) == (2, True, key)
    assert build_set_encryption(key, 0x07)[7] == 2  # DECRYPT without mixed

    off = build_set_encryption(None)
    assert off[6:9] == bytes([0, 0, 0]) and off[18:20] == b"\x00\x00" and len(off) == 20


def test_capabilities_page_finds_aes256_gcm_at_the_drive_s_own_index() -> None:
    page = capabilities_page(
        [
            (0x00, 2, 2, 16, 0x00010010),  # AES-128: not ours
            (0x05, 1, 2, 32, AES256_GCM),  # encrypts by external means only
            (0x09, 2, 2, 32, AES256_GCM),
        ]
    )
    found = decode_capabilities(page)
    assert [a.index for a in found] == [0x00, 0x05, 0x09]
    assert [a.is_aes256_gcm for a in found] == [False, False, True]
    assert found[2].key_size == 32 and found[2].security_algorithm_code == 0x00010014
    assert (found[1].encrypt_capable, found[1].decrypt_capable) == (1, 2)


def test_capabilities_refused_configuration_and_bad_pages() -> None:
    # CFG_P 10b: the drive's configuration keeps SPOUT from setting parameters.
    prevented = capabilities_page([(1, 2, 2, 32, AES256_GCM)], cfg_p=2)
    assert decode_capabilities(prevented) == []
    assert decode_capabilities(capabilities_page([])) == []
    good = capabilities_page([(1, 2, 2, 32, AES256_GCM)])
    with pytest.raises(ValueError, match="truncated"):
        decode_capabilities(good[:-5])
    with pytest.raises(ValueError, match="not a data encryption capabilities"):
        decode_capabilities(b"\x00\x20" + good[2:])
    short_descriptor = bytearray(good)
    short_descriptor[4 + 16 + 2 : 4 + 16 + 4] = (4).to_bytes(2, "big")
    with pytest.raises(ValueError, match="descriptor of 4 bytes"):
        decode_capabilities(bytes(short_descriptor))


def test_in_support_page() -> None:
    assert decode_in_support(in_support_page([0, 1, 0x10, 0x20])) == [0, 1, 0x10, 0x20]
    with pytest.raises(ValueError, match="odd length"):
        decode_in_support(b"\x00\x00\x00\x03\x00\x00\x10")
    with pytest.raises(ValueError):
        decode_in_support(b"\x00\x10\x00\x00")


def test_status_page_fields() -> None:
    # Page code 0020h, length, scopes (byte 4), encryption mode (5), decryption mode
    # (6), algorithm index (7), key instance counter (8-11).
    page = bytes([0x00, 0x20, 0x00, 0x14, 0x40, 0x02, 0x02, 0x09, 0, 0, 1, 2]) + bytes(12)
    status = decode_status(page)
    assert (status.encryption_mode, status.algorithm_index, status.key_instance) == (
        "encrypt",
        9,
        258,
    )


def test_pool_option_drive_encryption() -> None:
    base = {"changer": "lib1", "drives": "d0"}
    assert PoolSettings.from_options(base).drive_encryption == "off"
    for mode in ("off", "auto", "required", "AUTO"):
        opts = {**base, "drive_encryption": mode}
        assert PoolSettings.from_options(opts).drive_encryption == mode.lower()
    with pytest.raises(TapirError, match="drive_encryption must be one of off, auto, required"):
        PoolSettings.from_options({**base, "drive_encryption": "yes"})
