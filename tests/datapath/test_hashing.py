"""Chunk ids: plain and keyed BLAKE3."""

from __future__ import annotations

import os

import blake3
import pytest

from tapir.appliance.datapath.hashing import chunk_id_function


def test_plain_ids_are_blake3() -> None:
    fn = chunk_id_function(None)
    assert fn(b"abc") == blake3.blake3(b"abc").digest()
    assert len(fn(b"")) == 32


def test_keyed_ids_depend_on_the_key() -> None:
    key1, key2 = os.urandom(32), os.urandom(32)
    a, b = chunk_id_function(key1), chunk_id_function(key2)
    assert a(b"data") == blake3.blake3(b"data", key=key1).digest()
    assert a(b"data") != b(b"data")
    assert a(b"data") != chunk_id_function(None)(b"data")


def test_memoryview_and_bytes_hash_alike() -> None:
    fn = chunk_id_function(os.urandom(32))
    data = os.urandom(1000)
    assert fn(memoryview(data)[10:500]) == fn(data[10:500])


def test_bad_key_length() -> None:
    with pytest.raises(ValueError):
        chunk_id_function(b"short")
