"""The tgt library fixture itself: it starts, answers, and leaves nothing behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from vtl import TGT_RUN_DIR, Cartridge, LibraryStartError, start_library

from tapir.hardware.iscsi import IscsiTransport


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.split(") ", 1)[1][0] != "Z"


def test_library_starts_on_loopback_and_stops_without_leftovers(tmp_path: Path) -> None:
    lib, stop = start_library(tmp_path / "v")
    try:
        assert lib.portal.startswith("127.0.0.1:")
        assert _alive(lib.pid)
        assert (TGT_RUN_DIR / f"socket.{lib.control}").exists()
        with IscsiTransport(lib.changer_url) as t:
            assert t.execute(bytes(6)).good
    finally:
        stop()
    assert not _alive(lib.pid)
    assert not (TGT_RUN_DIR / f"socket.{lib.control}").exists()
    stop()  # idempotent


def test_two_libraries_run_side_by_side(tmp_path: Path) -> None:
    a, stop_a = start_library(tmp_path / "a", cartridges=[Cartridge("AAA001L8", slot=1)])
    try:
        b, stop_b = start_library(tmp_path / "b", cartridges=[Cartridge("BBB001L8", slot=1)])
        try:
            assert a.control != b.control and a.portal != b.portal
        finally:
            stop_b()
    finally:
        stop_a()
    assert not _alive(a.pid) and not _alive(b.pid)


def test_a_bad_layout_is_refused_before_tgtd_starts(tmp_path: Path) -> None:
    with pytest.raises(LibraryStartError, match="no slot 5"):
        start_library(tmp_path / "bad", slots=2, cartridges=[Cartridge("XXX001L8", slot=5)])


def test_a_failing_build_stops_tgtd(tmp_path: Path) -> None:
    before = _tgtd_pids()
    with pytest.raises(LibraryStartError, match="tgtadm"):
        # tgt refuses an element range of zero slots, after tgtd has started.
        start_library(tmp_path / "bad", slots=0, cartridges=[])
    assert _tgtd_pids() - before == set()


def _tgtd_pids() -> set[int]:
    return {
        int(p) for p in os.listdir("/proc") if p.isdigit() and _alive(int(p)) and _comm(p) == "tgtd"
    }


def _comm(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""
