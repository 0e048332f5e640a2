"""Backups to a tape pool through the real engine, restored byte for byte from tgt."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from vtl import VirtualLibrary

from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_api import TapirError
from tapir.hardware.changer import MediaChanger
from tapir.hardware.drive import TapeDrive
from tapir.plugins.tape.blockio import read_volume_catalog
from tapir.plugins.tape.format import FileKind

from .conftest import MakePool, add_volumes, make_tree, restored, tree


def volumes_of(app: Appliance, pool: str):
    vols = app.plugin_context("tape").volumes
    assert vols is not None
    return vols.list(pool=pool)


def test_backup_to_tape_and_restore_byte_for_byte(
    app: Appliance, make_pool: MakePool, vtl: VirtualLibrary, tmp_path: Path
) -> None:
    add_volumes(app, ["TAP001L8", "TAP002L8"])
    make_pool("tape1")
    source = make_tree(tmp_path / "src", 3 << 20)
    app.create_job("home", "files", "tape1", options={"paths": [str(source)]})
    run = app.run_job("home")
    assert run.state == "succeeded", run.error
    [vol] = volumes_of(app, "tape1")
    assert (vol.label, vol.state, vol.media_set_seq, vol.location) == (
        "TAP001L8",
        "writable",
        0,
        "slot 1",
    )
    assert vol.labeled and vol.uuid and vol.bytes_used > 3 << 20
    [rp] = app.recovery_points(job="home")
    assert restored(app, rp.id, tmp_path / "out", source) == tree(source)
    usage = app.pool_usage("tape1")
    assert usage["used"] == vol.bytes_used and usage["total"] is None  # sizes unknown

    # The cartridge describes itself: its last catalog lists labels, archives, and
    # the manifest archive carries the recovery point and the repository config.
    with MediaChanger.open(vtl.changer_url) as changer:
        changer.load(1, 0)
        with TapeDrive.open(vtl.drive_urls[0], block_size=0) as d:
            d.wait_ready(timeout=10)
            catalog, _files = read_volume_catalog(d, 65536)
        changer.unload(0)
    kinds = [r.kind for r in catalog.records]
    assert kinds == [
        FileKind.MEDIA_LABEL,
        FileKind.MEDIA_SET_LABEL,
        FileKind.CHUNK_ARCHIVE,
        FileKind.MANIFEST_ARCHIVE,
    ]
    assert catalog.header.media_set == vol.media_set and catalog.header.volume == vol.uuid
    names = catalog.records[3].manifests
    assert [n for n, _ in names] == ["config:repository", rp.id]
    assert len(catalog.records[2].chunks) >= 3


def test_spanning_two_cartridges_and_restore_across_both(
    app: Appliance, make_pool: MakePool, tmp_path: Path
) -> None:
    make_pool("small", drives="lib1-d0")
    add_volumes(app, ["SML001L8", "SML002L8", "SML003L8"], pool="small")
    source = make_tree(tmp_path / "src", 3 << 20)
    app.create_job("home", "files", "small", options={"paths": [str(source)]})
    run = app.run_job("home")
    assert run.state == "succeeded", run.error
    vols = volumes_of(app, "small")
    in_set = [v for v in vols if v.media_set]
    assert [(v.label, v.media_set_seq, v.state) for v in in_set] == [
        ("SML001L8", 0, "full"),
        ("SML002L8", 1, "writable"),
    ]
    assert in_set[0].media_set == in_set[1].media_set
    assert all(v.location.startswith("slot") for v in vols)  # both back in their slots
    [rp] = app.recovery_points(job="home")
    assert restored(app, rp.id, tmp_path / "out", source) == tree(source)


def test_incremental_dedups_within_the_media_set_and_always_new_does_not(
    app: Appliance, make_pool: MakePool, tmp_path: Path
) -> None:
    add_volumes(app, ["TAP001L8", "TAP002L8", "TAP003L8"])
    make_pool("cont")
    source = make_tree(tmp_path / "src", 2 << 20)
    app.create_job("home", "files", "cont", options={"paths": [str(source)]})
    full = app.run_job("home")
    assert full.state == "succeeded", full.error
    (source / "docs/new.txt").write_bytes(b"added later\n")
    inc = app.run_job("home", level="incremental")
    assert inc.state == "succeeded", inc.error
    # The 2 MB file is not written again: the incremental added only a little.
    assert inc.bytes_written < 200_000 < full.bytes_written
    [vol] = volumes_of(app, "cont")
    assert vol.label == "TAP001L8" and vol.state == "writable"
    points = app.recovery_points(job="home")
    assert [p.level for p in points] == ["incremental", "full"]
    assert restored(app, points[0].id, tmp_path / "out1", source) == tree(source)

    # always-new: every session starts a media set; the old one is sealed (full)
    # and the new set holds every chunk again (each set is self-contained).
    make_pool("fresh", allocation="always-new")
    app.create_job("home2", "files", "fresh", options={"paths": [str(source)]})
    first = app.run_job("home2")
    (source / "docs/later.txt").write_bytes(b"changed\n")
    # Asked for nothing in particular, the engine sees that the parent lies on the
    # sealed set and makes a full backup instead of an incremental that would
    # reference chunks outside the new set.
    second = app.run_job("home2")
    assert first.state == second.state == "succeeded", (first.error, second.error)
    assert second.level == "full"
    assert any("cannot reference parent" in m for _, _, m in app.run_log(second.id))
    assert second.bytes_written > 2 << 20
    sets = sorted(volumes_of(app, "fresh"), key=lambda v: v.label)
    assert [(v.label, v.state) for v in sets] == [("TAP002L8", "full"), ("TAP003L8", "writable")]
    assert sets[0].media_set != sets[1].media_set
    newest = app.recovery_points(job="home2")[0]
    assert restored(app, newest.id, tmp_path / "out2", source) == tree(source)


def test_restore_names_a_cartridge_in_the_vault(
    app: Appliance, make_pool: MakePool, vtl: VirtualLibrary, tmp_path: Path
) -> None:
    add_volumes(app, ["TAP001L8"])
    make_pool("tape1")
    source = make_tree(tmp_path / "src", 300_000)
    app.create_job("home", "files", "tape1", options={"paths": [str(source)]})
    assert app.run_job("home").state == "succeeded"
    [rp] = app.recovery_points(job="home")
    with MediaChanger.open(vtl.changer_url) as changer:
        changer.export(1)  # out through the mail slot, off to the vault
    volumes = app.plugin_context("tape").volumes
    assert volumes is not None
    vol = volumes.get("TAP001L8")
    assert vol is not None
    volumes.save(replace(vol, location="vault: bank box 3"))
    with pytest.raises(TapirError, match=r"TAP001L8 is needed but is vault: bank box 3"):
        app.restore(rp.id, target=tmp_path / "out")
    # Back from the vault (in the mail slot, the catalog not told yet): loaded from there.
    volumes.save(replace(vol, location="mail 1"))
    assert restored(app, rp.id, tmp_path / "out2", source) == tree(source)


def test_an_incremental_on_a_one_drive_pool(
    app: Appliance, make_pool: MakePool, tmp_path: Path
) -> None:
    # The parent's item list lives on the tape the backup appends to; it must be
    # read before the backup takes the only drive for writing.
    add_volumes(app, ["TAP001L8"])
    make_pool("single", drives="lib1-d0")
    source = make_tree(tmp_path / "src", 1 << 20)
    app.create_job("one", "files", "single", options={"paths": [str(source)]})
    assert app.run_job("one").state == "succeeded"
    (source / "docs/next.txt").write_bytes(b"next day\n")
    inc = app.run_job("one")
    assert inc.state == "succeeded", inc.error
    assert inc.level == "incremental" and inc.bytes_read < 100_000
    newest = app.recovery_points(job="one")[0]
    assert restored(app, newest.id, tmp_path / "out", source) == tree(source)
