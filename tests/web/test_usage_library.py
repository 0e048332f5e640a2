"""Pool usage over time (hourly samples, the chart on the pools page, the API) and the
tape library's status on the dashboard and under /api/v1/library, read from the
catalog of an appliance driving a real tgt tape library."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from vtl import Cartridge, VirtualLibrary, start_library

from tapir.appliance.engine.service import Appliance
from tapir.appliance.engine.worker import WorkerPool
from tapir.appliance.plugin_api import VolumeInfo

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _backed_up(app: Appliance, tmp_path: Path, size: int) -> None:
    src = tmp_path / "src"
    if not src.exists():
        src.mkdir()
        # Random data does not compress: what the pool stores is what dedup saved.
        (src / "data.bin").write_bytes(os.urandom(size))
    if not any(j.name == "docs" for j in app.jobs()):
        app.create_job("docs", "files", "default", options={"paths": [str(src)]}, timezone="UTC")
    run = app.run_job("docs", level="full")
    assert run.state == "succeeded", run.error


def test_samples_are_taken_at_most_once_an_hour_and_charted(
    appliance: Appliance, login: Callable[[str], FlaskClient], tmp_path: Path
) -> None:
    reader = login("read-only")
    page = reader.get("/pools/").get_data(as_text=True)
    assert "No usage samples yet" in page and "<polyline" not in page

    _backed_up(appliance, tmp_path, 256 * 1024)
    assert appliance.record_pool_usage(T0) == ["default"]
    assert appliance.record_pool_usage(T0 + timedelta(minutes=59)) == []  # within the hour
    _backed_up(appliance, tmp_path, 256 * 1024)  # same data again: logical grows, stored not
    assert appliance.record_pool_usage(T0 + timedelta(hours=1)) == ["default"]

    history = appliance.pool_usage_history("default", days=3660)
    assert [s["at"] for s in history] == [T0, T0 + timedelta(hours=1)]
    first, second = history
    assert first["used"] > 0 and first["logical"] == 256 * 1024
    assert second["logical"] == 2 * 256 * 1024
    # Deduplication: the second full backup of the same data stores (almost) nothing new.
    assert second["used"] - first["used"] < first["used"] // 2

    r = reader.get("/api/v1/pools/default/usage-history?days=3660")
    assert r.status_code == 200
    samples = r.get_json()["samples"]
    assert [s["logical"] for s in samples] == [256 * 1024, 2 * 256 * 1024]
    assert samples[0]["at"].startswith("2026-03-01T12:00")
    assert r.get_json()["pool"] == "default"
    # Samples older than the window asked for are left out.
    assert reader.get("/api/v1/pools/default/usage-history?days=1").get_json()["samples"] == []
    for bad in ("0", "x", "4000"):
        r = reader.get(f"/api/v1/pools/default/usage-history?days={bad}")
        assert r.status_code == 400 and r.get_json()["error"], bad
    assert reader.get("/api/v1/pools/nope/usage-history").status_code == 404

    # The pools page draws the last 90 days: put the samples there and look at the SVG.
    appliance.record_pool_usage(datetime.now(UTC) - timedelta(days=2))
    appliance.record_pool_usage(datetime.now(UTC))
    page = reader.get("/pools/").get_data(as_text=True)
    svg = re.search(r'<figure class="usage-chart" id="usage-default">(.*?)</figure>', page, re.S)
    assert svg, page
    lines = re.findall(r'<polyline class="chart-(\w+)" points="([^"]+)"', svg.group(1))
    assert [name for name, _ in lines] == ["logical", "used"]
    for _, points in lines:
        xs = [float(p.split(",")[0]) for p in points.split()]
        assert len(xs) == 2 and xs[0] < xs[1]
    assert "2 sample(s)" in svg.group(1)
    assert "http" not in svg.group(1).replace("http://www.w3.org", "")


def test_a_pool_whose_medium_is_unreadable_is_skipped(appliance: Appliance, tmp_path: Path) -> None:
    appliance.create_pool("spare", "disk", path=tmp_path / "spare")
    (tmp_path / "spare").rename(tmp_path / "spare-moved")
    assert appliance.record_pool_usage(T0) == ["default"]
    (tmp_path / "spare-moved").rename(tmp_path / "spare")
    assert appliance.record_pool_usage(T0 + timedelta(minutes=5)) == ["spare"]


def test_the_scheduler_thread_samples_every_pool(appliance: Appliance) -> None:
    pool = WorkerPool(appliance, workers=0, scheduler=True, discovery=False, tick_interval=0.05)
    pool.start()
    try:
        # Polled, not timed: the first tick samples; later ticks within the hour add nothing.
        for _ in range(400):
            if appliance.pool_usage_history("default"):
                break
            threading.Event().wait(0.05)
        threading.Event().wait(0.3)  # a few more ticks
    finally:
        pool.stop(timeout=30)
    assert len(appliance.pool_usage_history("default")) == 1


def test_the_dashboard_defines_the_dedup_ratio_and_shows_no_library_without_tape(
    login: Callable[[str], FlaskClient],
) -> None:
    page = login("read-only").get("/").get_data(as_text=True)
    assert "logical bytes of the pool's recovery points per byte the pool stores" in page
    assert 'id="library"' not in page
    r = login("read-only").get("/api/v1/library")
    assert r.get_json() == {"tape_pools": [], "drives": [], "cartridges": {}}


# The tape library: a real tgt library, its changer and drives registered.

CARTRIDGES = [Cartridge(f"TAP00{i}L8", slot=i, size_mb=8) for i in range(1, 6)]


@pytest.fixture
def vtl(tmp_path: Path) -> Iterator[VirtualLibrary]:
    lib, stop = start_library(tmp_path / "vtl", cartridges=CARTRIDGES)
    try:
        yield lib
    finally:
        stop()


def test_the_library_status_from_the_catalog(
    appliance: Appliance,
    vtl: VirtualLibrary,
    login: Callable[[str], FlaskClient],
    tmp_path: Path,
) -> None:
    appliance.register_device("lib1", "changer", vtl.changer_url)
    for number, url in enumerate(vtl.drive_urls):
        appliance.register_device(
            f"lib1-d{number}", "drive", url, changer="lib1", drive_number=number
        )
    appliance.create_pool("tapes", "tape", options={"changer": "lib1", "drives": "lib1-d0,lib1-d1"})
    volumes = appliance.plugin_context("tape").volumes
    assert volumes is not None
    for info in (
        VolumeInfo(label="TAP001L8", state="scratch", location="slot 1"),
        VolumeInfo(label="TAP002L8", state="scratch", location="slot 2"),
        VolumeInfo(
            label="TAP003L8",
            pool="tapes",
            state="writable",
            location="drive 0",
            media_set="set-1",
            media_set_seq=0,
        ),
        VolumeInfo(
            label="TAP004L8",
            pool="tapes",
            state="full",
            location="slot 4",
            media_set="set-1",
            media_set_seq=1,
        ),
        VolumeInfo(
            label="TAP005L8",
            pool="tapes",
            state="full",
            location="offline",
            media_set="set-0",
            media_set_seq=0,
        ),
    ):
        volumes.save(info)

    status = appliance.library_status()
    assert status.tape_pools == ["tapes"]
    assert status.cartridges == {
        "scratch": 2,
        "writable": 1,
        "full": 1,
        "offline": 1,
        "other": 0,
        "total": 5,
    }
    assert [(d.name, d.state, d.cartridge) for d in status.drives] == [
        ("lib1-d0", "loaded", "TAP003L8"),
        ("lib1-d1", "idle", None),
    ]

    # A run writing into the tape pool makes the drive holding its cartridge busy.
    src = tmp_path / "tsrc"
    src.mkdir()
    appliance.create_job("tj", "files", "tapes", options={"paths": [str(src)]}, timezone="UTC")
    run_id = appliance.queue_run("tj")
    assert appliance.claim_next_run("test-worker") == run_id
    assert [d.state for d in appliance.library_status().drives] == ["busy", "idle"]

    seen = datetime.now(UTC)
    appliance.record_tape_alerts("lib1-d0", ["20: Clean now"])
    appliance.record_tape_alerts("lib1-d1", [])
    with pytest.raises(KeyError, match="no tape drive"):
        appliance.record_tape_alerts("lib1", ["x"])
    with pytest.raises(ValueError, match="list of strings"):
        appliance.record_tape_alerts("lib1-d0", "20: Clean now")  # type: ignore[arg-type]

    reader = login("read-only")
    record = reader.get("/api/v1/library").get_json()
    assert record["cartridges"]["offline"] == 1
    d0, d1 = record["drives"]
    assert d0["state"] == "busy" and d0["alerts"] == ["20: Clean now"]
    assert datetime.fromisoformat(d0["alerts_seen_at"]) >= seen - timedelta(seconds=1)
    assert d1["alerts"] == [] and d1["changer"] == "lib1"

    page = reader.get("/").get_data(as_text=True)
    section = re.search(r'<section id="library">(.*?)</section>', page, re.S)
    assert section, page
    text = re.sub(r"\s+", " ", section.group(1))
    assert "2 scratch, 1 writable, 1 full, 1 offline (5 in all)" in text
    assert re.search(r'drive-busy">\s*<td>lib1-d0 \(0\)</td><td>lib1</td>', section.group(1))
    assert "20: Clean now" in text and "TAP003L8" in text
    assert re.search(r'drive-idle">.*?none <small', section.group(1), re.S)
