"""Sealing: compression, encryption, and unseal never returning wrong data."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tapir.appliance.datapath.blobs import (
    BLOB_MAGIC,
    FLAG_COMPRESSED,
    FLAG_ENCRYPTED,
    BlobSealer,
    Compression,
)
from tapir.appliance.datapath.hashing import chunk_id_function
from tapir.appliance.plugin_api.errors import ChunkCorrupt, TapirError

ENC_KEY = os.urandom(32)
ID_KEY = os.urandom(32)


def sealer(encrypted: bool, compression: str = "zstd:3") -> BlobSealer:
    return BlobSealer(
        compression=Compression.parse(compression),
        enc_key=ENC_KEY if encrypted else None,
        chunk_id=chunk_id_function(ID_KEY if encrypted else None),
    )


def sealed(s: BlobSealer, data: bytes) -> tuple[bytes, bytes]:
    cid = s._chunk_id(data)
    return cid, s.seal(data, cid)


@pytest.mark.parametrize(
    ("spec", "level"), [("zstd:3", 3), ("zstd:19", 19), ("zstd", 3), ("none", None), ("ZSTD:1", 1)]
)
def test_compression_parse(spec: str, level: int | None) -> None:
    assert Compression.parse(spec).level == level


@pytest.mark.parametrize("spec", ["lz4", "zstd:0", "zstd:23", "zstd:x", "", "zstd:-1"])
def test_compression_parse_rejects_unknown(spec: str) -> None:
    with pytest.raises(TapirError, match="unknown compression"):
        Compression.parse(spec)


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=20000), encrypted=st.booleans(), compress=st.booleans())
def test_seal_unseal_round_trip(data: bytes, encrypted: bool, compress: bool) -> None:
    s = sealer(encrypted, "zstd:3" if compress else "none")
    cid, blob = sealed(s, data)
    assert blob[0] == BLOB_MAGIC
    assert bool(blob[1] & FLAG_ENCRYPTED) == encrypted
    assert s.unseal(blob, cid) == data


def test_compressible_data_is_compressed_incompressible_is_not() -> None:
    s = sealer(False)
    _, blob = sealed(s, b"a" * 100000)
    assert blob[1] & FLAG_COMPRESSED and len(blob) < 1000
    noise = os.urandom(100000)
    _cid, blob = sealed(s, noise)
    assert not blob[1] & FLAG_COMPRESSED
    assert blob[2:] == noise  # stored as is when zstd does not shrink it


def test_plain_data_does_not_appear_in_encrypted_blob() -> None:
    s = sealer(True, "none")
    data = b"secret payroll " * 100
    _cid, blob = sealed(s, data)
    assert b"payroll" not in blob


def test_encryption_uses_fresh_nonces() -> None:
    s = sealer(True)
    data = os.urandom(5000)
    cid = s._chunk_id(data)
    assert s.seal(data, cid) != s.seal(data, cid)


@pytest.mark.parametrize("encrypted", [False, True])
@pytest.mark.parametrize("compression", ["zstd:3", "none"])
def test_every_single_byte_flip_is_detected(encrypted: bool, compression: str) -> None:
    s = sealer(encrypted, compression)
    data = (b"some fairly compressible text " * 40) + os.urandom(64)
    cid, blob = sealed(s, data)
    for position in range(len(blob)):
        damaged = bytearray(blob)
        damaged[position] ^= 0x04
        with pytest.raises(ChunkCorrupt) as info:
            s.unseal(bytes(damaged), cid)
        assert info.value.chunk_id == cid
        assert cid.hex() in str(info.value)


@pytest.mark.parametrize("encrypted", [False, True])
def test_blob_under_another_id_fails(encrypted: bool) -> None:
    s = sealer(encrypted)
    _cid_a, blob_a = sealed(s, b"first chunk" * 50)
    cid_b, _ = sealed(s, b"second chunk" * 50)
    with pytest.raises(ChunkCorrupt) as info:
        s.unseal(blob_a, cid_b)
    assert info.value.chunk_id == cid_b
    expected = "authentication failed" if encrypted else "content hash"
    assert expected in str(info.value)


@pytest.mark.parametrize("blob", [b"", b"\xb1", b"XX" + b"data", b"\xb1\x80data"])
def test_malformed_blobs(blob: bytes) -> None:
    with pytest.raises(ChunkCorrupt):
        sealer(False).unseal(blob, b"\x00" * 32)


def test_pool_mode_mismatch_is_refused() -> None:
    plain, enc = sealer(False), sealer(True)
    data = b"x" * 100
    cid_plain, blob_plain = sealed(plain, data)
    with pytest.raises(ChunkCorrupt, match="unencrypted, unlike this pool"):
        enc.unseal(blob_plain, enc._chunk_id(data))
    _cid_enc, blob_enc = sealed(enc, data)
    with pytest.raises(ChunkCorrupt, match="encrypted, unlike this pool"):
        plain.unseal(blob_enc, cid_plain)


def test_truncated_encrypted_blob() -> None:
    s = sealer(True)
    cid, blob = sealed(s, b"data")
    with pytest.raises(ChunkCorrupt, match="truncated"):
        s.unseal(blob[:10], cid)


def test_decompression_bomb_is_refused() -> None:
    s = BlobSealer(
        compression=Compression.parse("zstd:3"),
        enc_key=None,
        chunk_id=chunk_id_function(None),
        max_plain_length=1000,
    )
    data = bytes(5000)
    cid = s._chunk_id(data)
    with pytest.raises(ChunkCorrupt, match="cannot decompress"):
        s.unseal(s.seal(data, cid), cid)
