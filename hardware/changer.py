"""A SCSI media changer (SMC): inventory and cartridge moves with operator numbering.

Element addresses are the library's business; operators and callers speak of
slot 1..N, mail slot 1..K and drive 0..M, numbered in address order. Every move
is checked against a fresh inventory first, so a bad request fails with a
precise error before the robot moves; the library's own refusal is mapped to
the same errors in case the inventory went stale in between.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from . import cdb
from .cdb import ElementType
from .elements import Element, ElementKind, ElementStatus, decode_element_status
from .errors import (
    ChangerError,
    DestinationFull,
    DriveLoaded,
    IllegalRequest,
    NoHomeSlot,
    RemovalPrevented,
    SlotEmpty,
    UnitAttention,
    UnknownElement,
    error_for,
)
from .inquiry import InquiryData, inquire
from .sense import Sense
from .transport import Result, Transport, open_transport

MOVE_TIMEOUT = 300.0
INIT_TIMEOUT = 1800.0


@dataclass
class Inventory:
    """The library's elements by kind, each list in operator-number order."""

    transports: list[Element] = field(default_factory=list)
    slots: list[Element] = field(default_factory=list)
    mail_slots: list[Element] = field(default_factory=list)
    drives: list[Element] = field(default_factory=list)

    def _list(self, kind: ElementKind) -> list[Element]:
        return {
            ElementKind.TRANSPORT: self.transports,
            ElementKind.SLOT: self.slots,
            ElementKind.MAIL: self.mail_slots,
            ElementKind.DRIVE: self.drives,
        }[kind]

    def get(self, kind: ElementKind | str, number: int) -> Element:
        """The element ``kind number``; UnknownElement when there is none."""
        kind = ElementKind(kind)
        items = self._list(kind)
        first = 0 if kind == ElementKind.DRIVE else 1
        index = number - first
        if not 0 <= index < len(items):
            last = first + len(items) - 1
            raise UnknownElement(
                f"no {kind.value} {number} in this library "
                f"({kind.value}s are numbered {first}..{last})"
                if items
                else f"this library has no {kind.value}s"
            )
        return items[index]

    def by_address(self, address: int) -> Element | None:
        """The element at a library address, if any."""
        for el in self.all():
            if el.address == address:
                return el
        return None

    def find(self, barcode: str) -> Element | None:
        """Where the cartridge with this barcode is (slot, mail slot, drive), if present."""
        for el in self.all():
            if el.barcode == barcode:
                return el
        return None

    def first_empty(self, kind: ElementKind) -> Element | None:
        """The lowest-numbered empty element of a kind."""
        return next((el for el in self._list(kind) if not el.full), None)

    def all(self) -> list[Element]:
        """Every element: transports, slots, mail slots, drives."""
        return [*self.transports, *self.slots, *self.mail_slots, *self.drives]

    def to_dict(self) -> dict[str, list[dict[str, object]]]:
        """JSON-friendly: one list per kind."""
        return {
            "transports": [e.to_dict() for e in self.transports],
            "slots": [e.to_dict() for e in self.slots],
            "mail_slots": [e.to_dict() for e in self.mail_slots],
            "drives": [e.to_dict() for e in self.drives],
        }


def build_inventory(statuses: list[ElementStatus]) -> Inventory:
    """Number raw element statuses per kind in address order and resolve sources."""
    inv = Inventory()
    for st in sorted(statuses, key=lambda s: (s.type, s.address)):
        items = inv._list(st.kind)
        first = 0 if st.kind == ElementKind.DRIVE else 1
        items.append(
            Element(
                kind=st.kind,
                number=first + len(items),
                address=st.address,
                full=st.full,
                barcode=st.barcode,
                source_address=st.source_address,
                serial=st.identifier if st.kind == ElementKind.DRIVE else None,
                exception=st.exception,
                access=st.access,
            )
        )
    for el in inv.all():
        if el.full and el.source_address is not None:
            src = inv.by_address(el.source_address)
            if src is not None:
                el.source = (src.kind, src.number)
    return inv


ElementRef = Element | tuple[ElementKind | str, int] | str


def parse_ref(ref: ElementRef) -> tuple[ElementKind, int]:
    """``"slot:3"``, ``"drive:0"``, ``"mail:1"``, a (kind, number) pair or an Element."""
    if isinstance(ref, Element):
        return ref.kind, ref.number
    if isinstance(ref, tuple):
        return ElementKind(ref[0]), int(ref[1])
    kind, sep, num = ref.partition(":")
    try:
        if not sep:
            raise ValueError
        return ElementKind(kind.strip().lower()), int(num)
    except ValueError:
        raise UnknownElement(f"bad element {ref!r}: expected slot:N, mail:N or drive:N") from None


class MediaChanger:
    """One media changer reached through a Transport."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self._lock = threading.RLock()
        self._inventory: Inventory | None = None

    @classmethod
    def open(cls, address: str) -> MediaChanger:
        """Open a changer by ``/dev/sgN`` path or ``iscsi://`` URL."""
        return cls(open_transport(address))

    def close(self) -> None:
        """Release the transport."""
        self.transport.close()

    def __enter__(self) -> MediaChanger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- commands -------------------------------------------------------

    def _run(
        self, operation: str, command: bytes, *, data_in: int = 0, timeout: float = 60.0
    ) -> Result:
        res = self.transport.execute(command, data_in=data_in, timeout=timeout)
        if not res.good:
            raise error_for(operation, res.sense, res.status)
        return res

    def inquiry(self) -> InquiryData:
        """INQUIRY: vendor, product, revision, serial number."""
        return inquire(self.transport)

    def initialize_element_status(self) -> None:
        """Ask the library to rescan all elements (slow on big libraries)."""
        with self._lock:
            self._run(
                "INITIALIZE ELEMENT STATUS", cdb.initialize_element_status(), timeout=INIT_TIMEOUT
            )
            self._inventory = None

    def read_element_status(self) -> list[ElementStatus]:
        """Raw element status of every element, with barcodes and drive identifiers.

        One request per element type, device identifiers asked for drives only:
        that is what every library answers correctly (tgt garbles the all-types
        answer when DVCID is set), and a library that refuses DVCID is asked again
        without it.
        """
        out: list[ElementStatus] = []
        for etype in (
            ElementType.TRANSPORT,
            ElementType.STORAGE,
            ElementType.IMPORT_EXPORT,
            ElementType.DATA_TRANSFER,
        ):
            dvcid = etype == ElementType.DATA_TRANSFER
            try:
                data = self._element_status(etype, dvcid)
            except IllegalRequest:
                if not dvcid:
                    raise
                data = self._element_status(etype, False)
            out += [st for st in decode_element_status(data) if st.type == etype]
        return out

    def _element_status(self, etype: ElementType, dvcid: bool) -> bytes:
        alloc = 0xFFFF
        command = cdb.read_element_status(etype, alloc=alloc, dvcid=dvcid)
        for attempt in (1, 2):
            res = self.transport.execute(command, data_in=alloc)
            if res.good:
                return _element_data(res)
            err = error_for("READ ELEMENT STATUS", res.sense, res.status)
            # A unit attention reports a past event (door opened, reset); the
            # retry reads the state as it is now.
            if not (isinstance(err, UnitAttention) and attempt == 1):
                raise err
        raise AssertionError("unreachable")

    def inventory(self, refresh: bool = True) -> Inventory:
        """The library's inventory (re-read unless ``refresh`` is False and one is cached)."""
        with self._lock:
            if refresh or self._inventory is None:
                self._inventory = build_inventory(self.read_element_status())
            return self._inventory

    # --- moves ----------------------------------------------------------

    def move(self, source: ElementRef, destination: ElementRef, *, precheck: bool = True) -> None:
        """Move a cartridge between two elements (slot, mail slot or drive).

        Raises UnknownElement, SlotEmpty, DestinationFull, DriveLoaded or
        RemovalPrevented; in each case nothing has moved. A UNIT ATTENTION
        (door opened, library reset) makes it re-read the inventory and retry once.
        """
        skind, snum = parse_ref(source)
        dkind, dnum = parse_ref(destination)
        with self._lock:
            inv = self.inventory()
            src = inv.get(skind, snum)
            dst = inv.get(dkind, dnum)
            for el in (src, dst):
                if el.kind == ElementKind.TRANSPORT:
                    raise UnknownElement("the robot's transport element is not a move endpoint")
            if src.address == dst.address:
                raise ChangerError(f"{src.name} is both source and destination")
            if precheck:
                self._check(src, dst)
            if not inv.transports:
                raise ChangerError("the library reports no medium transport element")
            command = cdb.move_medium(inv.transports[0].address, src.address, dst.address)
            try:
                self._move(command, src, dst)
            except UnitAttention:
                inv = self.inventory()
                src, dst = inv.get(skind, snum), inv.get(dkind, dnum)
                if precheck:
                    self._check(src, dst)
                self._move(command, src, dst)
            finally:
                self._inventory = None

    @staticmethod
    def _check(src: Element, dst: Element) -> None:
        if not src.full:
            raise SlotEmpty(f"{src.name} is empty")
        if dst.full:
            raise _full_error(dst)

    def _move(self, command: bytes, src: Element, dst: Element) -> None:
        res = self.transport.execute(command, timeout=MOVE_TIMEOUT)
        if res.good:
            return
        raise _move_error(res.sense, src, dst) or error_for("MOVE MEDIUM", res.sense, res.status)

    def load(self, slot: int, drive: int = 0) -> None:
        """Move the cartridge in storage ``slot`` into ``drive``."""
        self.move((ElementKind.SLOT, slot), (ElementKind.DRIVE, drive))

    def unload(self, drive: int = 0, slot: int | None = None) -> int:
        """Move the cartridge in ``drive`` back to its home slot (or to ``slot``).

        The drive must have ejected the tape already (TapeDrive.unload) on
        libraries that require it. Returns the slot number used.
        """
        with self._lock:
            inv = self.inventory()
            el = inv.get(ElementKind.DRIVE, drive)
            if slot is None:
                if el.full and el.source and el.source[0] == ElementKind.SLOT:
                    candidate = inv.get(ElementKind.SLOT, el.source[1])
                    slot = candidate.number if not candidate.full else None
                if slot is None and el.full:
                    empty = inv.first_empty(ElementKind.SLOT)
                    if el.source is None and empty is None:
                        raise NoHomeSlot(f"{el.name}: home slot unknown and no slot is empty")
                    if empty is None:
                        raise DestinationFull("no empty storage slot to unload into")
                    slot = empty.number
                if slot is None:
                    raise SlotEmpty(f"{el.name} is empty")
            self.move((ElementKind.DRIVE, drive), (ElementKind.SLOT, slot))
            return slot

    def transfer(self, source_slot: int, destination_slot: int) -> None:
        """Move a cartridge from one storage slot to another."""
        self.move((ElementKind.SLOT, source_slot), (ElementKind.SLOT, destination_slot))

    def import_(self, mail: int, slot: int | None = None) -> int:
        """Take a cartridge from mail slot ``mail`` into ``slot`` (first empty when None)."""
        with self._lock:
            if slot is None:
                empty = self.inventory().first_empty(ElementKind.SLOT)
                if empty is None:
                    raise DestinationFull("no empty storage slot to import into")
                slot = empty.number
            self.move((ElementKind.MAIL, mail), (ElementKind.SLOT, slot))
            return slot

    def export(self, slot: int, mail: int | None = None) -> int:
        """Put the cartridge in ``slot`` into mail slot ``mail`` (first empty when None)."""
        with self._lock:
            if mail is None:
                inv = self.inventory()
                if not inv.mail_slots:
                    raise UnknownElement("this library has no mail slots")
                empty = inv.first_empty(ElementKind.MAIL)
                if empty is None:
                    raise DestinationFull("every mail slot is full")
                mail = empty.number
            self.move((ElementKind.SLOT, slot), (ElementKind.MAIL, mail))
            return mail

    def locate(self, barcode: str) -> Element | None:
        """Where a cartridge is, by barcode."""
        return self.inventory().find(barcode)


def _full_error(dst: Element) -> DestinationFull:
    holder = f" holds {dst.barcode}" if dst.barcode else " is full"
    if dst.kind == ElementKind.DRIVE:
        return DriveLoaded(f"{dst.name}{holder}; unload it first")
    return DestinationFull(f"{dst.name}{holder}")


def _move_error(sense: Sense | None, src: Element, dst: Element) -> ChangerError | None:
    if sense is None:
        return None
    pair = (sense.asc, sense.ascq)
    if pair == (0x3B, 0x0E):
        return SlotEmpty(f"{src.name} is empty (library: {sense.description})")
    if pair == (0x3B, 0x0D):
        return _full_error(dst)
    if pair == (0x53, 0x02):
        return RemovalPrevented(
            f"{src.name}: medium removal prevented; the drive or host must allow it first"
        )
    return None


def _element_data(res: Result) -> bytes:
    # tgt reports a residual 8 bytes too large here (it leaves the header out of
    # its count), which would cut off the last element; the header's own byte
    # count says how much is valid.
    data = res.data
    if len(data) >= 8:
        wanted = 8 + int.from_bytes(data[5:8], "big")
        if len(data) < wanted and res.buffer is not None and len(res.buffer) >= wanted:
            return res.buffer[:wanted]
    return data
