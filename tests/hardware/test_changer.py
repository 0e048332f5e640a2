"""The media changer against tgt: inventory, every kind of move, and refusals."""

from __future__ import annotations

import pytest
from vtl import VirtualLibrary

from tapir.hardware.changer import MediaChanger
from tapir.hardware.elements import ElementKind
from tapir.hardware.errors import (
    DestinationFull,
    DriveLoaded,
    RemovalPrevented,
    SlotEmpty,
    UnknownElement,
)
from tapir.hardware.sense import SenseKey, decode_sense
from tapir.hardware.transport import Result, Status, Transport


def _state(ch: MediaChanger) -> list[tuple[str, int, bool, str | None]]:
    return [(e.kind.value, e.number, e.full, e.barcode) for e in ch.inventory().all()]


def test_inventory_numbers_elements_for_operators(vtl: VirtualLibrary, changer: MediaChanger):
    inv = changer.inventory()
    assert len(inv.slots) == 12 and len(inv.mail_slots) == 2 and len(inv.drives) == 2
    assert len(inv.transports) == 1
    assert [s.address for s in inv.slots] == vtl.storage_addresses
    assert inv.get("slot", 1).barcode == "TAP001L8" and inv.get("slot", 1).number == 1
    assert inv.get("drive", 0).address == vtl.drive_addresses[0]
    assert inv.get("mail", 1).barcode == "TAP010L8"
    assert not inv.get("slot", 10).full and inv.get("slot", 10).barcode is None
    cleaner = inv.find("CLN001L1")
    assert cleaner is not None and cleaner.cleaning and cleaner.number == 12
    assert not inv.get("slot", 1).cleaning
    assert next(d.serial for d in inv.drives) == "VDRV0000"
    assert inv.to_dict()["slots"][0]["barcode"] == "TAP001L8"
    info = changer.inquiry()
    assert info.kind == "changer" and info.serial == "VLIB0001"


def test_load_and_unload_to_home_slot(changer: MediaChanger) -> None:
    changer.load(3, 1)
    inv = changer.inventory()
    drive = inv.get("drive", 1)
    assert drive.full and drive.barcode == "TAP003L8" and drive.source == (ElementKind.SLOT, 3)
    assert not inv.get("slot", 3).full
    assert changer.unload(1) == 3
    inv = changer.inventory()
    assert inv.get("slot", 3).barcode == "TAP003L8" and not inv.get("drive", 1).full


def test_unload_to_an_explicit_slot_and_slot_to_slot(changer: MediaChanger) -> None:
    changer.load(2, 0)
    assert changer.unload(0, slot=10) == 10
    changer.transfer(10, 11)
    inv = changer.inventory()
    assert inv.get("slot", 11).barcode == "TAP002L8"
    assert not inv.get("slot", 2).full and not inv.get("slot", 10).full


def test_import_and_export_through_mail_slots(changer: MediaChanger) -> None:
    assert changer.import_(1) == 10  # first empty storage slot
    assert changer.inventory().get("slot", 10).barcode == "TAP010L8"
    assert changer.export(5) == 1  # mail slot 1 is empty again
    assert changer.export(6, mail=2) == 2
    inv = changer.inventory()
    assert inv.get("mail", 1).barcode == "TAP005L8" and inv.get("mail", 2).barcode == "TAP006L8"
    with pytest.raises(DestinationFull, match="every mail slot is full"):
        changer.export(7)


def test_move_by_operator_strings(changer: MediaChanger) -> None:
    changer.move("slot:12", "drive:0")
    assert changer.locate("CLN001L1").kind == ElementKind.DRIVE  # type: ignore[union-attr]


@pytest.mark.parametrize("precheck", [True, False])
def test_bad_requests_leave_the_library_unchanged(changer: MediaChanger, precheck: bool) -> None:
    changer.load(4, 0)
    before = _state(changer)
    with pytest.raises(SlotEmpty, match="slot 10 is empty"):
        changer.move("slot:10", "slot:11", precheck=precheck)
    with pytest.raises(DestinationFull, match="slot 2 holds TAP002L8"):
        changer.move("slot:1", "slot:2", precheck=precheck)
    with pytest.raises(DriveLoaded, match="drive 0 holds TAP004L8; unload it first"):
        changer.move("slot:1", "drive:0", precheck=precheck)
    assert _state(changer) == before


def test_unknown_elements_are_refused_before_anything_moves(changer: MediaChanger) -> None:
    before = _state(changer)
    with pytest.raises(UnknownElement, match=r"no slot 13 .*1\.\.12"):
        changer.load(13, 0)
    with pytest.raises(UnknownElement, match=r"no drive 2 .*0\.\.1"):
        changer.load(1, 2)
    with pytest.raises(UnknownElement, match="bad element"):
        changer.move("bay:1", "slot:2")
    with pytest.raises(UnknownElement, match="transport"):
        changer.move("slot:1", "transport:1")
    with pytest.raises(SlotEmpty):
        changer.unload(1)
    assert _state(changer) == before


def test_medium_removal_prevented_by_the_drive(vtl: VirtualLibrary, changer: MediaChanger):
    from tapir.hardware.drive import TapeDrive

    changer.load(1, 0)
    with TapeDrive.open(vtl.drive_urls[0]) as drive:
        drive.wait_ready(timeout=10)
        drive.prevent_removal(True)
        before = _state(changer)
        with pytest.raises(RemovalPrevented):
            changer.unload(0)
        assert _state(changer) == before
        drive.prevent_removal(False)
    assert changer.unload(0) == 1


class _OneUnitAttention(Transport):
    """Wraps the real transport; the first MOVE MEDIUM gets a UNIT ATTENTION."""

    kind = "iscsi"

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.address = inner.address
        self.fired = False
        self.moves = 0

    def execute(self, cdb, *, data_out=None, data_in=0, timeout=60.0):  # type: ignore[override]
        if cdb[0] == 0xA5:
            self.moves += 1
            if not self.fired:
                self.fired = True
                raw = bytes.fromhex("700006000000000a00000000280000000000")
                return Result(Status.CHECK_CONDITION, sense=decode_sense(raw), cdb=bytes(cdb))
        return self.inner.execute(cdb, data_out=data_out, data_in=data_in, timeout=timeout)

    def close(self) -> None:
        self.inner.close()


def test_unit_attention_reinventories_and_retries_once(vtl: VirtualLibrary) -> None:
    from tapir.hardware.iscsi import IscsiTransport

    wrapped = _OneUnitAttention(IscsiTransport(vtl.changer_url))
    with MediaChanger(wrapped) as ch:
        ch.load(1, 0)
        assert wrapped.moves == 2
        assert ch.inventory().get("drive", 0).barcode == "TAP001L8"
    assert decode_sense(bytes.fromhex("700006000000000a00000000280000000000")).key == (
        SenseKey.UNIT_ATTENTION
    )
