"""Pool options, the allocation policy, drive reservation and the index, without a library."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tapir.appliance.plugin_api import (
    DeviceInfo,
    PluginContext,
    RunCanceled,
    TapirError,
    VolumeInfo,
)
from tapir.plugins.tape.allocation import new_volume_candidates, starts_new_set
from tapir.plugins.tape.format import CatalogHeader, CatalogRecord, FileKind, VolumeCatalog
from tapir.plugins.tape.index import TapeIndex, config_entry_name, split_entry_name
from tapir.plugins.tape.options import PoolSettings
from tapir.plugins.tape.reservation import DriveBusy, reserve_drive


def test_pool_options_are_parsed_and_bad_ones_refused() -> None:
    s = PoolSettings.from_options(
        {"changer": "lib1", "drives": "d0, d1", "allocation": "0 0 * * 6", "retention_sets": "3"}
    )
    assert s.drives == ("d0", "d1") and s.retention_sets == 3 and s.block_size == 262144
    for bad, message in (
        ({"drives": "d0"}, "changer"),
        ({"changer": "lib1"}, "drives"),
        ({"changer": "lib1", "drives": "d0,d0"}, "twice"),
        ({"changer": "lib1", "drives": "d0", "allocation": "weekly"}, "cron expression"),
        ({"changer": "lib1", "drives": "d0", "block_size": "1000"}, "multiple of 4096"),
        ({"changer": "lib1", "drives": "d0", "retention_days": "x"}, "whole number"),
        (
            {"changer": "lib1", "drives": "d0", "retention_days": 1, "retention_sets": 1},
            "not both",
        ),
    ):
        with pytest.raises(TapirError, match=message):
            PoolSettings.from_options(bad)


def test_allocation_policy() -> None:
    monday = datetime(2026, 11, 23, 12, tzinfo=UTC)
    sunday = datetime(2026, 11, 29, 12, tzinfo=UTC)
    assert starts_new_set("continue", None, monday)
    assert not starts_new_set("continue", monday, sunday)
    assert starts_new_set("always-new", monday, monday)
    weekly = "0 0 * * 6"  # Saturday midnight
    assert not starts_new_set(weekly, monday, datetime(2026, 11, 27, tzinfo=UTC))
    assert starts_new_set(weekly, monday, sunday)


def test_new_volume_candidates_order_and_exclusions() -> None:
    old = datetime(2020, 1, 1, tzinfo=UTC)
    vols = [
        VolumeInfo("B1", state="scratch"),
        VolumeInfo("A1", state="scratch"),
        VolumeInfo("P1", pool="p", state="scratch"),
        VolumeInfo("Q1", pool="q", state="scratch"),
        VolumeInfo("E2", pool="p", state="expired", last_written_at=datetime.now(UTC)),
        VolumeInfo("E1", pool="p", state="recyclable", last_written_at=old),
        VolumeInfo("W1", pool="p", state="expired", worm=True),
        VolumeInfo("F1", pool="p", state="full"),
        VolumeInfo("GONE", state="scratch"),
        VolumeInfo("CLN1", state="cleaning", cleaning=True),
    ]
    present = {v.label for v in vols} - {"GONE"}
    got = [v.label for v in new_volume_candidates(vols, "p", present)]
    assert got == ["P1", "A1", "B1", "E1", "E2"]


def context(tmp_path: Path, cancel: threading.Event | None = None) -> PluginContext:
    def check() -> None:
        if cancel is not None and cancel.is_set():
            raise RunCanceled("canceled")

    return PluginContext(
        logger=logging.getLogger("tapir.plugin.tape.test"),
        state_dir=tmp_path,
        check_canceled=check,
    )


def test_drive_reservation_excludes_waits_and_honours_cancel(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = context(tmp_path)
    drives = [DeviceInfo("d0", "drive", "x"), DeviceInfo("d1", "drive", "y")]
    a = reserve_drive(ctx, drives, purpose="a")
    b = reserve_drive(ctx, drives, purpose="b")
    assert {a.drive.name, b.drive.name} == {"d0", "d1"}
    with pytest.raises(DriveBusy, match=r"d0: .* a"):
        reserve_drive(ctx, drives, purpose="c", wait=False)
    got: list[str] = []
    waiter = threading.Thread(
        target=lambda: got.append(reserve_drive(ctx, drives, purpose="c").drive.name)
    )
    with caplog.at_level(logging.WARNING):
        waiter.start()
        time.sleep(0.5)
        assert waiter.is_alive() and "waiting for a free drive" in caplog.text
        b.release()
        waiter.join(5)
    assert got == [b.drive.name]
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(RunCanceled):
        reserve_drive(context(tmp_path, cancel), drives, purpose="d")
    with pytest.raises(TapirError, match="no enabled drive"):
        reserve_drive(ctx, [DeviceInfo("d9", "drive", "z", enabled=False)], purpose="e")
    a.release()


def test_index_records_and_rebuild(tmp_path: Path) -> None:
    index = TapeIndex(tmp_path / "i.sqlite")
    index.add_media_set("a" * 32, "p", "2026-01-01T00:00:00+00:00")
    cid = b"\x01" * 32
    index.record_chunks("a" * 32, "TAP1", 2, [(cid, 100)])
    assert index.has_chunk(cid, "a" * 32) and not index.has_chunk(cid, "b" * 32)
    index.put_manifest("rp1", "a" * 32, "TAP1", 3, 40, b"blob")
    index.delete_manifest("rp1")
    assert index.manifest_names() == []
    with pytest.raises(FileNotFoundError):
        index.get_manifest("rp1")
    assert split_entry_name(config_entry_name("repository")) == ("config", "repository")
    assert split_entry_name("rp1") == ("manifest", "rp1")

    # Rebuilt from a volume catalog alone: chunk and manifest locations, configs.
    header = CatalogHeader("c" * 32, 0, "d" * 32, "e" * 32, 4, "2026-02-01T00:00:00+00:00")
    records = [
        CatalogRecord(0, FileKind.MEDIA_LABEL),
        CatalogRecord(1, FileKind.MEDIA_SET_LABEL),
        CatalogRecord(2, FileKind.CHUNK_ARCHIVE, "f" * 32, 0, "e" * 32, 0, chunks=[(cid, 7)]),
        CatalogRecord(
            3,
            FileKind.MANIFEST_ARCHIVE,
            "0" * 32,
            0,
            "e" * 32,
            1,
            manifests=[("config:repository", 5), ("rp2", 90)],
        ),
    ]
    index.rebuild_from(
        {"TAP7": VolumeCatalog(header, records)},
        {"rp2": b"m"},
        {"repository": b"cfg"},
        pool="p",
    )
    loc = index.chunk_location(cid)
    assert loc is not None and (loc.volume, loc.file, loc.offset) == ("TAP7", 2, 7)
    assert index.manifest_names() == ["rp2"] and index.get_config("repository") == b"cfg"
    assert [r.file_number for r in index.volume_records("TAP7")] == [0, 1, 2, 3, 4]
    current = index.current_media_set()
    assert current is not None and current.uuid == "c" * 32
    index.close()
