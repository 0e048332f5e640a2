"""The decisions behind expiry and labelling, case by case (pure functions, no library)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tapir.appliance.plugin_api import VolumeInfo
from tapir.plugins.tape.format import MediaLabel
from tapir.plugins.tape.index import MediaSetRow
from tapir.plugins.tape.inventory import media_type_of
from tapir.plugins.tape.labelling import judge
from tapir.plugins.tape.labels import ForeignTape
from tapir.plugins.tape.lifecycle import due_sets

NOW = datetime(2026, 6, 1, tzinfo=UTC)
UUID = "a" * 32


def _set(name: str, days_ago: int, *, sealed: bool = True, expired: bool = False) -> MediaSetRow:
    created = (NOW - timedelta(days=days_ago)).isoformat()
    return MediaSetRow(name * 32, "tp", created, sealed, expired)


def test_retention_days_counts_from_the_last_write_of_sealed_sets() -> None:
    old, recent, open_set = _set("a", 40), _set("b", 40), _set("c", 400, sealed=False)
    gone = _set("d", 400, expired=True)
    writes = {
        old.uuid: [VolumeInfo("V1", last_written_at=NOW - timedelta(days=11))],
        recent.uuid: [VolumeInfo("V2", last_written_at=NOW - timedelta(days=9))],
    }
    due = due_sets(
        [old, recent, open_set, gone],
        lambda uuid: writes.get(uuid, []),
        retention_days=10,
        retention_sets=None,
        now=NOW,
    )
    assert [(s.uuid, why) for s, why in due] == [(old.uuid, "last written more than 10 day(s) ago")]


def test_retention_sets_keeps_the_newest_and_never_an_open_set() -> None:
    sets = [_set("a", 30), _set("b", 20), _set("c", 10), _set("e", 5, sealed=False)]
    due = due_sets(sets, lambda uuid: [], retention_days=None, retention_sets=2, now=NOW)
    assert [s.uuid for s, _ in due] == ["a" * 32, "b" * 32]
    assert due_sets(sets, lambda uuid: [], retention_days=None, retention_sets=None, now=NOW) == []
    # Keeping 0 sets still spares the open one, which backups are writing.
    due = due_sets(sets, lambda uuid: [], retention_days=None, retention_sets=0, now=NOW)
    assert len(due) == 3


def _label(barcode: str = "TAP001L8", pool: str | None = "tp", volume: str = UUID) -> MediaLabel:
    return MediaLabel(None, None, barcode, volume, pool, NOW.isoformat(), 65536)


@pytest.mark.parametrize(
    ("row", "on_tape", "allowed", "needs_force", "why"),
    [
        (VolumeInfo("TAP001L8"), None, True, False, ""),
        (VolumeInfo("TAP001L8", uuid=UUID, pool="tp"), _label(), True, False, ""),
        (VolumeInfo("TAP001L8", uuid=UUID), _label(pool="other"), False, True, "pool other"),
        (VolumeInfo("TAP001L8", uuid=UUID), _label(barcode="X"), False, True, "barcode X"),
        (VolumeInfo("TAP001L8"), _label(), False, True, "unknown to this catalog"),
        (VolumeInfo("TAP001L8"), ForeignTape("junk"), False, True, "not Tapir's"),
        (VolumeInfo("TAP001L8", state="full", media_set=UUID), None, False, False, "holds data"),
        (VolumeInfo("TAP001L8", state="writable", media_set=UUID), None, False, False, "expire"),
        (VolumeInfo("TAP001L8", state="retired"), None, False, False, "retired"),
        (VolumeInfo("TAP001L8", state="error"), None, False, True, "'error'"),
        (VolumeInfo("WRM001LY", worm=True, labeled=True), None, False, False, "WORM"),
        (VolumeInfo("WRM001LY", worm=True), None, True, False, ""),
        (VolumeInfo("CLN001L1", state="cleaning", cleaning=True), None, False, False, "clean"),
    ],
)
def test_who_may_be_labelled(
    row: VolumeInfo, on_tape: object, allowed: bool, needs_force: bool, why: str
) -> None:
    verdict = judge(row, on_tape, "tp")  # type: ignore[arg-type]
    assert (verdict.allowed, verdict.needs_force) == (allowed, needs_force)
    assert why in verdict.reason


def test_media_types_from_barcodes() -> None:
    assert media_type_of("TAP001L8") == ("LTO-8", False)
    assert media_type_of("WRM001LY") == ("LTO-8 WORM", True)
    assert media_type_of("ABC123LT") == ("LTO-3 WORM", True)
    assert media_type_of("CLN001L1") == ("LTO-1", False)
    assert media_type_of("DISK01") == ("", False)
