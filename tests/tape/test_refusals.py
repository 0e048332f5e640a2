"""Tapes that must not be written are refused and left exactly as they were."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from vtl import VirtualLibrary

from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_api import TapirError, VolumeInfo
from tapir.hardware.changer import MediaChanger
from tapir.hardware.drive import TapeDrive
from tapir.hardware.errors import FilemarkReached
from tapir.plugins.tape.blockio import scan_volume
from tapir.plugins.tape.format import MediaLabel, new_uuid
from tapir.plugins.tape.labels import (
    ForeignTape,
    WriteRefused,
    check_writable,
    read_media_label,
    write_media_label,
)

from .conftest import MakePool, add_volumes, make_tree

FOREIGN = b"tar archive of another program\n" * 2000


def on_drive(vtl: VirtualLibrary, slot: int):  # type: ignore[no-untyped-def]
    """Load the cartridge of ``slot`` into drive 0; yields the open drive."""
    import contextlib

    @contextlib.contextmanager
    def loaded():  # type: ignore[no-untyped-def]
        with MediaChanger.open(vtl.changer_url) as changer:
            changer.load(slot, 0)
            try:
                with TapeDrive.open(vtl.drive_urls[0], block_size=0) as d:
                    d.wait_ready(timeout=10)
                    d.set_block_size(0)
                    d.rewind()
                    yield d
            finally:
                changer.unload(0)

    return loaded()


def test_foreign_unknown_and_other_pool_tapes_are_refused_and_untouched(
    app: Appliance, make_pool: MakePool, vtl: VirtualLibrary, tmp_path: Path
) -> None:
    make_pool("strict")
    # FOR001L8 holds another program's data; TAP002L8 a Tapir label this catalog
    # never wrote; TAP003L8 a label of this catalog's cartridge, made for pool "other".
    with on_drive(vtl, 8) as d:
        d.write(FOREIGN)
        d.write_filemarks(1)
    with on_drive(vtl, 2) as d:
        unknown = write_media_label(d, VolumeInfo("TAP002L8"), "elsewhere", 65536)
    with on_drive(vtl, 3) as d:
        mine = write_media_label(d, VolumeInfo("TAP003L8"), "other", 65536)
    add_volumes(app, ["FOR001L8", "TAP002L8", "TAP003L8"])
    volumes = app.plugin_context("tape").volumes
    assert volumes is not None
    volumes.save(replace(volumes.get("TAP003L8"), uuid=mine.uuid, labeled=True))  # type: ignore[arg-type]

    source = make_tree(tmp_path / "src", 200_000)
    app.create_job("home", "files", "strict", options={"paths": [str(source)]})
    run = app.run_job("home")
    assert run.state == "failed"
    assert "no volume to write" in run.error
    for why in (
        "FOR001L8: the tape does not start with a Tapir media label",
        "TAP002L8 carries a Tapir label",
        "TAP003L8 is labelled for pool 'other'",
    ):
        assert why in run.error
    assert app.recovery_points(job="home") == []

    # Nothing was written: each tape reads back as it was.
    with on_drive(vtl, 8) as d:
        assert d.read(len(FOREIGN)) == FOREIGN
        with pytest.raises(FilemarkReached):
            d.read(65536)
    for slot, volume in ((2, unknown), (3, mine)):
        with on_drive(vtl, slot) as d:
            label = read_media_label(d, 65536)
            assert label is not None and label.volume == volume.uuid
            assert len(scan_volume(d, 65536)) == 1
    for label in ("FOR001L8", "TAP002L8", "TAP003L8"):
        vol = volumes.get(label)
        assert vol is not None and vol.state == "error" and "refused" in vol.note
        assert vol.location.startswith("slot")


def test_read_media_label_tells_blank_from_foreign(vtl: VirtualLibrary) -> None:
    with on_drive(vtl, 1) as d:
        assert read_media_label(d, 65536) is None  # a new, blank cartridge
        d.rewind()
        d.write(b"\x00" * 65536)
        d.write_filemarks(1)
        with pytest.raises(ForeignTape, match="does not start with a Tapir media label"):
            read_media_label(d, 65536)


def label(barcode: str = "TAP001L8", uuid: str | None = None, pool: str | None = "p") -> MediaLabel:
    return MediaLabel(
        None, None, barcode, uuid or "a" * 32, pool, "2026-01-01T00:00:00+00:00", 65536
    )


@pytest.mark.parametrize(
    ("on_tape", "volume", "reason"),
    [
        (None, VolumeInfo("TAP001L8", state="full", pool="p"), "is full"),
        (None, VolumeInfo("TAP001L8", state="retired"), "is retired"),
        (None, VolumeInfo("TAP001L8", state="error"), "is error"),
        (None, VolumeInfo("CLN001L1", state="cleaning", cleaning=True), "cleaning cartridge"),
        (None, VolumeInfo("TAP001L8", state="scratch", pool="q"), "belongs to pool 'q'"),
        (None, VolumeInfo("TAP001L8", state="writable", pool="p"), "tape is blank"),
        (None, VolumeInfo("TAP001L8", state="expired", pool="p", worm=True), "WORM"),
        (label("TAP009L8"), VolumeInfo("TAP001L8", uuid="a" * 32), "barcode and media label"),
        (label(), VolumeInfo("TAP001L8"), "unknown to this catalog"),
        (label(), VolumeInfo("TAP001L8", uuid="b" * 32), "two cartridges with one barcode"),
        (label(pool="q"), VolumeInfo("TAP001L8", uuid="a" * 32), "labelled for pool 'q'"),
    ],
)
def test_check_writable_refuses(
    on_tape: MediaLabel | None, volume: VolumeInfo, reason: str
) -> None:
    with pytest.raises(WriteRefused, match=reason):
        check_writable(on_tape, volume, "p")


@pytest.mark.parametrize(
    ("on_tape", "volume"),
    [
        (None, VolumeInfo("TAP001L8")),
        (label(), VolumeInfo("TAP001L8", uuid="a" * 32, pool="p", state="writable")),
        (label(pool=None), VolumeInfo("TAP001L8", uuid="a" * 32)),
        (label(pool="q"), VolumeInfo("TAP001L8", uuid="a" * 32, pool="p", state="expired")),
        (None, VolumeInfo("TAP001L8", uuid=new_uuid(), pool="p", state="recyclable")),
    ],
)
def test_check_writable_allows(on_tape: MediaLabel | None, volume: VolumeInfo) -> None:
    check_writable(on_tape, volume, "p")


def test_pool_creation_checks_its_devices_and_leaves_nothing_on_refusal(app: Appliance) -> None:
    with pytest.raises(TapirError, match="no device named 'nodrive'"):
        app.create_pool("bad", media="tape", options={"changer": "lib1", "drives": "nodrive"})
    with pytest.raises(TapirError, match="not a changer"):
        app.create_pool("bad", media="tape", options={"changer": "lib1-d0", "drives": "lib1-d0"})
    assert "bad" not in [p.name for p in app.pools()]
    # Refused pools left no index behind: the name can be used once the options are right.
    pool = app.create_pool(
        "bad", media="tape", options={"changer": "lib1", "drives": "lib1-d0,lib1-d1"}
    )
    assert pool.options["drives"] == "lib1-d0,lib1-d1"
