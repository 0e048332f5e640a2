"""Drive encryption through the real engine and a real tgt library.

With the transport double (an encryption-capable drive in front of tgt) the
pool's key is in the drive for every block written and read, and gone when the
session ends. Against tgt itself, which refuses SECURITY PROTOCOL IN, ``auto``
logs and writes, ``required`` refuses before anything is loaded or written.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from vtl import VirtualLibrary

from tapir.appliance.engine.service import Appliance
from tapir.hardware.changer import MediaChanger
from tapir.hardware.drive import TapeDrive
from tapir.hardware.elements import ElementKind
from tapir.plugins.tape.drive_crypto import load_drive_key
from tapir.plugins.tape.labels import read_media_label

from .conftest import (
    AES_INDEX,
    CARTRIDGES,
    DriveState,
    MakePool,
    Media,
    add_volumes,
    make_tree,
    restored,
    tree,
)

UNAVAILABLE = "hardware encryption is not available on drive"


def backup(app: Appliance, pool: str, source: Path) -> object:
    app.create_job("home", "files", pool, options={"paths": [str(source)]})
    return app.run_job("home")


def check_key_use(state: DriveState, key: bytes, *, reads: bool) -> None:
    """The key was set (AES index, MIXED reads) before any data moved, and cleared after.

    Only the two labels of a new volume are written in clear: the key is switched off
    for their block and filemark and sent again before anything else is written.
    """
    assert state.pages, "the drive never received a Set Data Encryption page"
    first = state.pages[0]
    assert (first.encryption_mode, first.decryption_mode) == (2, 3)
    assert (first.algorithm_index, first.key, first.scope, first.ckorl) == (AES_INDEX, key, 2, True)
    assert state.pages[-1].encryption_mode == 0 and state.pages[-1].key == b""
    assert state.key is None, "the key was left in the drive"
    assert all(p.key in (key, b"") for p in state.pages)
    kinds = {op for op, _ in state.data_ops}
    assert "write" in kinds or reads
    clear = [op for op, held in state.data_ops if held is None]
    assert clear in ([], ["write", "filemark", "write", "filemark"]), clear
    assert all(held in (key, None) for _, held in state.data_ops)


@pytest.mark.parametrize("mode", ["auto", "required"])
def test_capable_drive_gets_the_key_for_writes_and_reads_and_loses_it_after(
    app: Appliance,
    make_pool: MakePool,
    tmp_path: Path,
    capable_drives: dict[str, DriveState],
    media: Media,
    mode: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    add_volumes(app, ["TAP001L8"])
    make_pool("crypt", drives="lib1-d0", drive_encryption=mode)
    key = load_drive_key(app.plugin_context("tape"), "crypt")
    assert key is not None
    source = make_tree(tmp_path / "src", 300_000)
    run = backup(app, "crypt", source)
    assert run.state == "succeeded", run.error  # type: ignore[attr-defined]
    [state] = [s for s in capable_drives.values() if s.data_ops]
    check_key_use(state, key, reads=False)
    assert {op for op, _ in state.data_ops} >= {"write", "filemark"}
    assert media.clear_blocks == 2 and media.encrypted_blocks > 2  # the labels, the data
    written = len(state.data_ops)
    assert "encrypts with AES-256-GCM (algorithm index 1)" in caplog.text
    assert UNAVAILABLE not in caplog.text

    [rp] = app.recovery_points(job="home")
    assert restored(app, rp.id, tmp_path / "out", source) == tree(source)
    reads = state.data_ops[written:]
    assert reads and all(op == "read" and held == key for op, held in reads)
    assert state.key is None and state.pages[-1].encryption_mode == 0


def test_off_never_speaks_the_security_protocol(
    app: Appliance, make_pool: MakePool, tmp_path: Path, capable_drives: dict[str, DriveState]
) -> None:
    add_volumes(app, ["TAP001L8"])
    make_pool("plain", drives="lib1-d0")
    assert load_drive_key(app.plugin_context("tape"), "plain") is None
    run = backup(app, "plain", make_tree(tmp_path / "src", 100_000))
    assert run.state == "succeeded", run.error  # type: ignore[attr-defined]
    assert all(not s.pages and s.key is None for s in capable_drives.values())
    assert any(s.data_ops for s in capable_drives.values())


def test_auto_on_tgt_logs_once_and_writes(
    app: Appliance, make_pool: MakePool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    add_volumes(app, ["SML001L8", "SML002L8"])
    make_pool("maybe", drives="lib1-d0", drive_encryption="auto")
    source = make_tree(tmp_path / "src", 2_500_000)  # spans two 2 MB cartridges
    run = backup(app, "maybe", source)
    assert run.state == "succeeded", run.error  # type: ignore[attr-defined]
    volumes = app.plugin_context("tape").volumes
    assert volumes is not None
    assert len([v for v in volumes.list(pool="maybe")]) == 2  # two mounts, one message
    lines = [
        r
        for r in caplog.records
        if r.name.startswith("tapir.plugin.tape") and UNAVAILABLE in r.getMessage()
    ]
    assert len(lines) == 1 and "lib1-d0" in lines[0].getMessage()
    assert "SECURITY PROTOCOL IN" in lines[0].getMessage()
    [rp] = app.recovery_points(job="home")
    assert restored(app, rp.id, tmp_path / "out", source) == tree(source)


def test_required_on_tgt_refuses_before_writing_anything(
    app: Appliance, make_pool: MakePool, vtl: VirtualLibrary, tmp_path: Path
) -> None:
    add_volumes(app, ["TAP001L8", "TAP002L8"])
    make_pool("strict", drive_encryption="required")
    run = backup(app, "strict", make_tree(tmp_path / "src", 200_000))
    assert run.state == "failed"  # type: ignore[attr-defined]
    error = run.error  # type: ignore[attr-defined]
    assert "requires drive encryption" in error and "nothing was written" in error
    assert app.recovery_points(job="home") == []
    volumes = app.plugin_context("tape").volumes
    assert volumes is not None
    for label in ("TAP001L8", "TAP002L8"):
        vol = volumes.get(label)
        assert vol is not None and (vol.state, vol.pool, vol.labeled) == ("scratch", None, False)

    # The cartridges never left their slots, and they read back blank.
    with MediaChanger.open(vtl.changer_url) as changer:
        inv = changer.inventory()
        assert not any(drive.full for drive in inv.drives)
        for slot in (1, 2):
            barcode = next(c.barcode for c in CARTRIDGES if c.slot == slot)
            assert inv.get(ElementKind.SLOT, slot).barcode == barcode
            changer.load(slot, 0)
            try:
                with TapeDrive.open(vtl.drive_urls[0], block_size=0) as d:
                    d.wait_ready(timeout=10)
                    d.set_block_size(0)
                    d.rewind()
                    assert read_media_label(d) is None
            finally:
                changer.unload(0)
