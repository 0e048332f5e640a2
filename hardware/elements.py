"""The element status a media changer reports (SMC READ ELEMENT STATUS data).

Decoded here rather than with pyscsi because pyscsi skips the device
identifiers (DVCID) that carry drive serial numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum

from .cdb import ElementType

CLEANING_PREFIX = "CLN"


class ElementKind(StrEnum):
    """Operator-facing element kinds; numbers are per kind (slot 1..N, drive 0..M)."""

    TRANSPORT = "transport"
    SLOT = "slot"
    MAIL = "mail"
    DRIVE = "drive"


_KIND_OF_TYPE = {
    ElementType.TRANSPORT: ElementKind.TRANSPORT,
    ElementType.STORAGE: ElementKind.SLOT,
    ElementType.IMPORT_EXPORT: ElementKind.MAIL,
    ElementType.DATA_TRANSFER: ElementKind.DRIVE,
}


@dataclass
class ElementStatus:
    """One element as the library reports it (raw, before numbering)."""

    type: ElementType
    address: int
    full: bool
    barcode: str | None = None
    source_address: int | None = None
    exception: tuple[int, int] | None = None
    access: bool = True
    identifier: str | None = None
    import_enabled: bool | None = None
    export_enabled: bool | None = None

    @property
    def kind(self) -> ElementKind:
        """The operator-facing kind of this element."""
        return _KIND_OF_TYPE[self.type]


def _volume_tag(raw: bytes) -> str | None:
    text = raw[:32].decode("ascii", "replace").strip(" \x00")
    return text or None


def _identifier(raw: bytes) -> str | None:
    # Device identification descriptor (SPC designation descriptor format).
    if len(raw) < 4:
        return None
    code_set, designator, length = raw[0] & 0x0F, raw[1] & 0x0F, raw[3]
    body = raw[4 : 4 + length]
    if designator == 1 and code_set == 2 and len(body) > 24:
        # T10 vendor identification: vendor (8), product (16), then the serial number.
        body = body[24:]
    if code_set in (2, 3):
        return body.decode("ascii", "replace").strip(" \x00") or None
    return body.hex() or None


def decode_element_status(data: bytes) -> list[ElementStatus]:
    """Decode READ ELEMENT STATUS data into a flat list of elements.

    Raises ValueError on data that is truncated or inconsistent.
    """
    if len(data) < 8:
        raise ValueError(f"element status data too short ({len(data)} bytes)")
    total = int.from_bytes(data[5:8], "big")
    end = min(len(data), 8 + total)
    pos = 8
    out: list[ElementStatus] = []
    while pos + 8 <= end:
        etype = data[pos] & 0x0F
        pvoltag = bool(data[pos + 1] & 0x80)
        avoltag = bool(data[pos + 1] & 0x40)
        dlen = int.from_bytes(data[pos + 2 : pos + 4], "big")
        page_bytes = int.from_bytes(data[pos + 5 : pos + 8], "big")
        try:
            element_type = ElementType(etype)
        except ValueError as exc:
            raise ValueError(f"unknown element type {etype}") from exc
        if dlen < 12:
            raise ValueError(f"element descriptor length {dlen} too small")
        page_end = min(end, pos + 8 + page_bytes)
        d = pos + 8
        while d + dlen <= page_end:
            out.append(_decode_descriptor(element_type, data[d : d + dlen], pvoltag, avoltag))
            d += dlen
        pos = pos + 8 + page_bytes
    return out


def _decode_descriptor(
    etype: ElementType, desc: bytes, pvoltag: bool, avoltag: bool
) -> ElementStatus:
    flags = desc[2]
    asc, ascq = desc[4], desc[5]
    svalid = bool(desc[9] & 0x80)
    el = ElementStatus(
        type=etype,
        address=int.from_bytes(desc[0:2], "big"),
        full=bool(flags & 0x01),
        exception=(asc, ascq) if flags & 0x04 else None,
        access=bool(flags & 0x08) if etype != ElementType.TRANSPORT else True,
        source_address=int.from_bytes(desc[10:12], "big") if svalid else None,
    )
    if etype == ElementType.IMPORT_EXPORT:
        el.import_enabled = bool(flags & 0x20)
        el.export_enabled = bool(flags & 0x10)
    rest = desc[12:]
    if pvoltag:
        el.barcode = _volume_tag(rest[:36]) if el.full else None
        rest = rest[36:]
    if avoltag:
        rest = rest[36:]
    if len(rest) >= 4:
        el.identifier = _identifier(rest)
    return el


@dataclass
class Element:
    """An element with its operator number: slot 1..N, mail slot 1..K, drive 0..M."""

    kind: ElementKind
    number: int
    address: int
    full: bool
    barcode: str | None = None
    source: tuple[ElementKind, int] | None = None
    source_address: int | None = None
    serial: str | None = None
    exception: tuple[int, int] | None = None
    access: bool = True

    @property
    def cleaning(self) -> bool:
        """A cleaning cartridge (barcode prefix CLN) sits here."""
        return bool(self.barcode and self.barcode.upper().startswith(CLEANING_PREFIX))

    @property
    def name(self) -> str:
        """``slot 3``, ``drive 0``, ``mail 1``."""
        return f"{self.kind.value} {self.number}"

    def to_dict(self) -> dict[str, object]:
        """A JSON-friendly dict (kind, number, address, full, barcode, ...)."""
        d = asdict(self)
        d["kind"] = self.kind.value
        d["cleaning"] = self.cleaning
        if self.source:
            d["source"] = {"kind": self.source[0].value, "number": self.source[1]}
        return d
