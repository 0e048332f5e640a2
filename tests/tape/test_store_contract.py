"""The MediaStore contract on tape, driven directly: abort, sessions without a guard, reads."""

from __future__ import annotations

import hashlib
import os
import time

import pytest
from vtl import VirtualLibrary

from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_api import ChunkMissing, VolumeInfo
from tapir.hardware.changer import MediaChanger
from tapir.hardware.drive import TapeDrive
from tapir.plugins.tape.blockio import TapeFileReader, locate, scan_volume
from tapir.plugins.tape.format import FileKind
from tapir.plugins.tape.store import native_capacity

from .conftest import MakePool, add_volumes


def blob(i: int, size: int = 50_000) -> tuple[bytes, bytes]:
    data = os.urandom(size)
    return hashlib.blake2b(data + bytes([i]), digest_size=32).digest(), data


def test_abort_keeps_the_tape_readable_and_records_nothing(
    app: Appliance, make_pool: MakePool, vtl: VirtualLibrary
) -> None:
    add_volumes(app, ["TAP001L8"])
    make_pool("raw", drives="lib1-d1")
    store = app.repository("raw").store
    try:
        chunks = [blob(i) for i in range(40)]
        session = store.begin()
        for cid, data in chunks:
            session.put_chunk(cid, data)
        # Let the writer thread take every blob, so the abort meets an open archive
        # (blobs still queued at an abort are dropped without being written).
        deadline = time.monotonic() + 20
        while not session._queue.empty():  # type: ignore[attr-defined]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        session.abort()
        assert not any(store.has_chunk(cid) for cid, _ in chunks)
        assert list(store.chunk_ids()) == []

        # A session that commits, then stores a manifest, without any guard.
        session = store.begin()
        for cid, data in chunks[:5]:
            session.put_chunk(cid, data)
        session.commit()
        store.put_manifest("rp-1", b"manifest bytes")
        assert all(store.has_chunk(cid) for cid, _ in chunks[:5])
        assert store.get_manifest("rp-1") == b"manifest bytes"
        # Read back in reverse order: each read repositions, every blob is right.
        for cid, data in reversed(chunks[:5]):
            assert store.get_chunk(cid) == data
        with pytest.raises(ChunkMissing):
            store.get_chunk(b"\x00" * 32)
        assert store.delete_chunks([chunks[0][0]]) == 0
        store.delete_manifest("rp-1")
        assert store.manifests() == []
        with pytest.raises(FileNotFoundError):
            store.get_manifest("rp-1")
    finally:
        store.close()

    with MediaChanger.open(vtl.changer_url) as changer:
        changer.load(1, 0)
        with TapeDrive.open(vtl.drive_urls[0], block_size=0) as d:
            d.wait_ready(timeout=10)
            d.set_block_size(0)
            files = scan_volume(d, 65536)
            assert [f.header.kind for f in files if f.header] == [
                FileKind.MEDIA_LABEL,
                FileKind.MEDIA_SET_LABEL,
                FileKind.CHUNK_ARCHIVE,  # the aborted one, ended cleanly
                FileKind.CATALOG,
                FileKind.CHUNK_ARCHIVE,
                FileKind.MANIFEST_ARCHIVE,
                FileKind.CATALOG,
            ]
            locate(d, 2, 65536)
            reader = TapeFileReader(d, 65536)
            assert len(list(reader.chunks())) >= 1 and reader.complete
        changer.unload(0)


def test_native_capacity() -> None:
    assert native_capacity(VolumeInfo("A", bytes_total=5)) == 5
    assert native_capacity(VolumeInfo("A", media_type="LTO-8")) == 12 * 10**12
    assert native_capacity(VolumeInfo("A")) is None
