"""Pool keys: generation, wrapping with the master key, passphrase export."""

from __future__ import annotations

import os

import pytest

from tapir.appliance.datapath.keys import PoolKeys
from tapir.appliance.plugin_api.errors import TapirError

FAST = {"scrypt_log2_n": 10}


def test_generate_gives_distinct_random_keys() -> None:
    a, b = PoolKeys.generate(), PoolKeys.generate()
    assert len(a.enc_key) == len(a.id_key) == 32
    assert a.enc_key != a.id_key
    assert a != b


def test_repr_never_shows_key_material() -> None:
    keys = PoolKeys.generate()
    assert keys.enc_key.hex() not in repr(keys)
    assert keys.id_key.hex() not in repr(keys)
    assert "enc_key" not in repr(keys)


def test_wrong_key_length_is_refused() -> None:
    with pytest.raises(TapirError, match="32 bytes"):
        PoolKeys(enc_key=b"short", id_key=os.urandom(32))


def test_wrap_unwrap_round_trip() -> None:
    keys, master = PoolKeys.generate(), os.urandom(32)
    wrapped = keys.wrap(master)
    assert wrapped[0] == 1  # version byte
    assert keys.enc_key not in wrapped and keys.id_key not in wrapped
    assert PoolKeys.unwrap(wrapped, master) == keys


def test_wrap_uses_a_fresh_nonce_each_time() -> None:
    keys, master = PoolKeys.generate(), os.urandom(32)
    assert keys.wrap(master) != keys.wrap(master)


def test_unwrap_with_wrong_master_key_is_a_clear_error() -> None:
    wrapped = PoolKeys.generate().wrap(os.urandom(32))
    with pytest.raises(TapirError, match="master key cannot unwrap"):
        PoolKeys.unwrap(wrapped, os.urandom(32))


@pytest.mark.parametrize("position", [0, 5, 20, -1])
def test_unwrap_of_damaged_blob_fails(position: int) -> None:
    master = os.urandom(32)
    wrapped = bytearray(PoolKeys.generate().wrap(master))
    wrapped[position] ^= 0x01
    with pytest.raises(TapirError):
        PoolKeys.unwrap(bytes(wrapped), master)


def test_unwrap_truncated_and_bad_master_key() -> None:
    master = os.urandom(32)
    wrapped = PoolKeys.generate().wrap(master)
    with pytest.raises(TapirError, match="truncated"):
        PoolKeys.unwrap(wrapped[:10], master)
    with pytest.raises(TapirError, match="32 bytes"):
        PoolKeys.unwrap(wrapped, b"too short")


def test_export_import_round_trip() -> None:
    keys = PoolKeys.generate()
    exported = keys.export("correct horse battery staple", **FAST)
    assert exported.startswith(b"TAPIRKEY\x01")
    assert keys.enc_key not in exported
    assert PoolKeys.from_export(exported, "correct horse battery staple") == keys


def test_default_export_work_factor_round_trips() -> None:
    keys = PoolKeys.generate()
    exported = keys.export("pw")
    assert exported[9] == 17  # log2(n) recorded in the export
    assert PoolKeys.from_export(exported, "pw") == keys


def test_import_with_wrong_passphrase_is_a_clear_error() -> None:
    exported = PoolKeys.generate().export("right", **FAST)
    with pytest.raises(TapirError, match="wrong passphrase"):
        PoolKeys.from_export(exported, "wrong")


def test_import_of_damaged_or_foreign_data_fails() -> None:
    exported = bytearray(PoolKeys.generate().export("pw", **FAST))
    with pytest.raises(TapirError, match="not a Tapir key export"):
        PoolKeys.from_export(b"hello", "pw")
    exported[-1] ^= 0x80
    with pytest.raises(TapirError, match="wrong passphrase, or the key export is damaged"):
        PoolKeys.from_export(bytes(exported), "pw")
    future = bytearray(PoolKeys.generate().export("pw", **FAST))
    future[8] = 99
    with pytest.raises(TapirError, match="version 99"):
        PoolKeys.from_export(bytes(future), "pw")


def test_export_refuses_empty_passphrase() -> None:
    with pytest.raises(TapirError, match="non-empty passphrase"):
        PoolKeys.generate().export("", **FAST)


def test_check_value_identifies_keys() -> None:
    a, b = PoolKeys.generate(), PoolKeys.generate()
    assert a.check_value() == PoolKeys(a.enc_key, a.id_key).check_value()
    assert a.check_value() != b.check_value()
    assert len(a.check_value()) == 16
