"""Reading a drive-encrypted pool's cartridges: labels in clear, everything after them only
with the pool's drive key in the drive (label command, mount, catalog rebuild, restore).

The double of conftest.py makes encrypted blocks unreadable without their key, so a read
that forgot the key fails here exactly as it would on an LTO drive.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from vtl import VirtualLibrary

from tapir.appliance.config import load_settings
from tapir.appliance.engine.service import Appliance
from tapir.hardware import encryption
from tapir.hardware.changer import MediaChanger
from tapir.hardware.drive import TapeDrive
from tapir.hardware.errors import HardwareError
from tapir.plugins.tape.blockio import locate
from tapir.plugins.tape.cli import register
from tapir.plugins.tape.drive_crypto import is_decryption_error, load_drive_key
from tapir.plugins.tape.labels import read_media_label, read_media_set_label
from tapir.plugins.tape.rebuild import RebuildReport, rebuild_catalog
from tapir.plugins.tape.reservation import hold

from .conftest import AES_INDEX, DriveState, MakePool, Media, add_volumes, make_tree, restored, tree

PASS = "correct horse battery staple"


def tapir(app: Appliance, args: list[str], input: str | None = None) -> click.testing.Result:
    cli = click.Group("tapir")
    register(cli, app.plugin_context)
    return CliRunner().invoke(cli, args, input=input)


def backup(app: Appliance, pool: str, source: Path) -> None:
    app.create_job("home", "files", pool, options={"paths": [str(source)]})
    run = app.run_job("home")
    assert run.state == "succeeded", run.error


def rebuild(app: Appliance) -> RebuildReport:
    ctx = app.plugin_context("tape")
    assert ctx.devices is not None
    return rebuild_catalog(ctx, "lib1", ctx.devices.drives_of("lib1"))


def tape_row(report: RebuildReport, barcode: str) -> dict[str, object]:
    [row] = [t for t in report.tapes if t["barcode"] == barcode]
    return row


@pytest.fixture
def site_b(tmp_path: Path, vtl: VirtualLibrary) -> Iterator[Appliance]:
    """A second appliance on the same library: the one that replaces a lost appliance."""
    other = Appliance.open(load_settings(tmp_path / "site-b"))
    other.initialize()
    other.register_device("lib1", "changer", vtl.changer_url)
    for number, url in enumerate(vtl.drive_urls):
        other.register_device(f"lib1-d{number}", "drive", url, changer="lib1", drive_number=number)
    yield other
    other.close()


def test_labels_are_clear_the_data_needs_the_key_and_rebuild_takes_it_from_the_import(
    app: Appliance,
    site_b: Appliance,
    make_pool: MakePool,
    vtl: VirtualLibrary,
    tmp_path: Path,
    capable_drives: dict[str, DriveState],
    media: Media,
) -> None:
    add_volumes(app, ["TAP001L8"])
    make_pool("crypt", drives="lib1-d0", drive_encryption="required")
    source = make_tree(tmp_path / "src", 200_000)
    backup(app, "crypt", source)
    [point] = app.recovery_points(job="home")
    keyfile = tmp_path / "crypt.key"
    res = tapir(
        app, ["tape", "drive-key", "export", "crypt", "--out", str(keyfile)], f"{PASS}\n" * 2
    )
    assert res.exit_code == 0, res.output

    # Any drive, key or not, identifies the cartridge; the first archive does not read.
    with MediaChanger.open(vtl.changer_url) as changer:
        changer.load(1, 0)
        try:
            with TapeDrive.open(vtl.drive_urls[0], block_size=0) as d:
                d.wait_ready(timeout=10)
                label = read_media_label(d)
                assert label is not None and (label.barcode, label.pool) == ("TAP001L8", "crypt")
                set_label = read_media_set_label(d, label.block_size)
                assert set_label is not None and set_label.pool == "crypt"
                locate(d, 2, label.block_size)
                with pytest.raises(HardwareError) as refused:
                    d.read(label.block_size)
                assert is_decryption_error(refused.value)
        finally:
            changer.unload(0)

    # The appliance is lost: without the drive key the rebuild says which key is missing.
    report = rebuild(site_b)
    row = tape_row(report, "TAP001L8")
    assert row["status"] == "unreadable" and row["pool"] == "crypt"
    problem = str(row["problem"])
    assert "drive key of pool crypt is not loaded" in problem
    assert "tapir tape drive-key import crypt FILE" in problem
    assert [p.pool for p in report.pools if p.volumes] == []

    res = tapir(site_b, ["tape", "drive-key", "import", "crypt", str(keyfile)], f"{PASS}\n")
    assert res.exit_code == 0, res.output
    report = rebuild(site_b)
    assert tape_row(report, "TAP001L8")["status"] == "media set"
    [pool] = report.pools
    assert pool.pool == "crypt" and pool.volumes == ["TAP001L8"] and len(pool.manifests) == 1
    assert all(state.key is None for state in capable_drives.values()), "key left in a drive"

    # Attached with the default options (drive_encryption=off): the imported key reads it.
    site_b.attach_pool("crypt", "tape", path=None, options={"changer": "lib1", "drives": "lib1-d0"})
    assert site_b.rescan_pool("crypt").added == [point.id]
    assert restored(site_b, point.id, tmp_path / "out", source) == tree(source)

    # A key that is not the one the tape was written with is named as such.
    app.plugin_context("tape").store_secret("tape.drive-key.crypt", bytes(32).hex())
    row = tape_row(rebuild(app), "TAP001L8")
    assert row["status"] == "unreadable"
    assert "the drive key of pool crypt does not decrypt its data" in str(row["problem"])


def test_label_command_writes_the_label_in_clear_and_a_backup_then_uses_it(
    app: Appliance,
    make_pool: MakePool,
    vtl: VirtualLibrary,
    tmp_path: Path,
    capable_drives: dict[str, DriveState],
    media: Media,
) -> None:
    add_volumes(app, ["TAP001L8"])
    make_pool("crypt", drives="lib1-d0", drive_encryption="auto")
    res = tapir(app, ["tape", "label", "TAP001L8", "--changer", "lib1", "--pool", "crypt"])
    assert res.exit_code == 0, res.output
    assert (media.clear_blocks, media.encrypted_blocks) == (1, 0)
    assert all(not s.pages for s in capable_drives.values()), "labelling needs no key"

    backup(app, "crypt", make_tree(tmp_path / "src", 100_000))
    assert media.clear_blocks == 2 and media.encrypted_blocks > 0  # + the media-set label
    volumes = app.plugin_context("tape").volumes
    assert volumes is not None
    vol = volumes.get("TAP001L8")
    assert vol is not None and (vol.pool, vol.state) == ("crypt", "writable")
    # A written cartridge is refused by the label command, which read its clear label.
    res = tapir(app, ["tape", "label", "TAP001L8", "--changer", "lib1", "--pool", "crypt"])
    assert "it holds data" in res.output


def test_required_refuses_to_restore_through_a_drive_that_cannot_decrypt(
    app: Appliance,
    make_pool: MakePool,
    vtl: VirtualLibrary,
    tmp_path: Path,
    capable_drives: dict[str, DriveState],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    add_volumes(app, ["TAP001L8"])
    make_pool("strict", drives="lib1-d0", drive_encryption="required")
    backup(app, "strict", make_tree(tmp_path / "src", 100_000))
    [rp] = app.recovery_points(job="home")

    monkeypatch.undo()  # the drives are tgt's alone now: no tape data encryption
    with pytest.raises(Exception, match="cannot decrypt AES-256-GCM; nothing was read"):
        result = app.restore(rp.id, target=tmp_path / "out")
        raise AssertionError(result.failed)  # a restore that did not raise failed per item
    with MediaChanger.open(vtl.changer_url) as changer:
        assert not any(d.full for d in changer.inventory().drives), "a cartridge was loaded"


def test_restore_with_another_drive_key_says_the_key_does_not_decrypt(
    app: Appliance,
    make_pool: MakePool,
    tmp_path: Path,
    capable_drives: dict[str, DriveState],
) -> None:
    add_volumes(app, ["TAP001L8"])
    make_pool("crypt", drives="lib1-d0", drive_encryption="auto")
    backup(app, "crypt", make_tree(tmp_path / "src", 100_000))
    [rp] = app.recovery_points(job="home")
    key = load_drive_key(app.plugin_context("tape"), "crypt")
    assert key is not None
    # The key of another appliance took its place: the tape's blocks do not decrypt.
    app.plugin_context("tape").store_secret("tape.drive-key.crypt", bytes(32).hex())
    with pytest.raises(Exception, match="the drive key of pool crypt does not decrypt its data"):
        result = app.restore(rp.id, target=tmp_path / "out")
        raise AssertionError(result.failed)


def test_a_second_backup_to_the_same_pool_waits_for_the_first_and_says_so(
    app: Appliance, make_pool: MakePool, tmp_path: Path
) -> None:
    add_volumes(app, ["TAP001L8", "TAP002L8"])
    make_pool("one", drive_encryption="off")  # two drives, one writer
    ctx = app.plugin_context("tape")
    waiting = threading.Event()

    class Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "waiting for pool one" in record.getMessage():
                waiting.set()

    seen = Seen()
    logging.getLogger("tapir.plugin.tape").addHandler(seen)
    runs: list[object] = []
    app.create_job("home", "files", "one", options={"paths": [str(make_tree(tmp_path / "s", 1))]})
    first = hold(ctx, "pool", "one", purpose="backup session of another job")
    try:
        job = threading.Thread(target=lambda: runs.append(app.run_job("home")))
        job.start()
        assert waiting.wait(120), "the second writer never said it was waiting"
        assert job.is_alive() and not runs, "a second writer did not wait for the pool"
    finally:
        first.release()
        logging.getLogger("tapir.plugin.tape").removeHandler(seen)
    job.join(120)
    [run] = runs
    assert run.state == "succeeded", run.error  # type: ignore[attr-defined]
    log = [m for _, _, m in app.run_log(run.id)]  # type: ignore[attr-defined]
    assert any("waiting for pool one" in m and "another job" in m for m in log), log


def test_label_command_refuses_a_cartridge_whose_first_file_is_encrypted(
    app: Appliance,
    make_pool: MakePool,
    vtl: VirtualLibrary,
    capable_drives: dict[str, DriveState],
) -> None:
    add_volumes(app, ["TAP001L8"])
    make_pool("crypt", drives="lib1-d0", drive_encryption="auto")
    # Another program wrote this cartridge under a drive key Tapir does not hold.
    with MediaChanger.open(vtl.changer_url) as changer:
        changer.load(1, 0)
        try:
            with TapeDrive.open(vtl.drive_urls[0], block_size=0) as d:
                d.wait_ready(timeout=10)
                encryption.set_encryption(d.transport, bytes(range(32)), AES_INDEX)
                d.write(b"someone else's data".ljust(65536, b"\0"))
                d.write_filemarks(1)
                encryption.set_encryption(d.transport, None)
        finally:
            changer.unload(0)
    res = tapir(app, ["tape", "label", "TAP001L8", "--changer", "lib1", "--pool", "crypt"])
    assert res.exit_code != 0
    assert "not blank and not Tapir's: its first tape file is encrypted in the drive" in res.output
    res = tapir(
        app, ["tape", "label", "TAP001L8", "--changer", "lib1", "--pool", "crypt", "--force"]
    )
    assert res.exit_code == 0, res.output
    with MediaChanger.open(vtl.changer_url) as changer:
        changer.load(1, 0)
        try:
            with TapeDrive.open(vtl.drive_urls[0], block_size=0) as d:
                d.wait_ready(timeout=10)
                label = read_media_label(d)  # in clear, read without a key
                assert label is not None and label.pool == "crypt"
        finally:
            changer.unload(0)
