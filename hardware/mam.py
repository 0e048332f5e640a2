"""Medium auxiliary memory (MAM) attributes: READ ATTRIBUTE data decoded."""

from __future__ import annotations

from dataclasses import dataclass

from . import cdb
from .errors import error_for
from .transport import Transport

NAMES: dict[int, str] = {
    0x0000: "remaining capacity (MiB)",
    0x0001: "maximum capacity (MiB)",
    0x0003: "load count",
    0x0004: "MAM space remaining",
    0x0220: "total MiB written in medium life",
    0x0221: "total MiB read in medium life",
    0x0222: "total MiB written in current/last load",
    0x0223: "total MiB read in current/last load",
    0x0400: "medium manufacturer",
    0x0401: "medium serial number",
    0x0402: "medium length (m)",
    0x0403: "medium width (0.1 mm)",
    0x0404: "assigning organization",
    0x0405: "medium density code",
    0x0406: "medium manufacture date",
    0x0408: "medium type",
    0x0800: "application vendor",
    0x0801: "application name",
    0x0802: "application version",
    0x0803: "user medium text label",
    0x0804: "date and time last written",
    0x0806: "barcode",
    0x0807: "owning host textual name",
    0x0808: "media pool",
}


@dataclass(frozen=True)
class Attribute:
    """One MAM attribute: identifier, name, read-only flag and decoded value."""

    id: int
    name: str
    read_only: bool
    value: int | str | bytes


def decode_attributes(data: bytes) -> list[Attribute]:
    """Decode READ ATTRIBUTE (values) data; ValueError when an attribute is truncated."""
    if len(data) < 4:
        raise ValueError("attribute data too short")
    end = min(len(data), 4 + int.from_bytes(data[0:4], "big"))
    out, pos = [], 4
    while pos + 5 <= end:
        ident = int.from_bytes(data[pos : pos + 2], "big")
        fmt, length = data[pos + 2], int.from_bytes(data[pos + 3 : pos + 5], "big")
        raw = data[pos + 5 : pos + 5 + length]
        if len(raw) != length:
            raise ValueError(f"attribute {ident:#06x} truncated")
        kind = fmt & 0x03
        value: int | str | bytes
        if kind == 0 and length <= 8:
            value = int.from_bytes(raw, "big")
        elif kind in (1, 2):
            value = raw.decode("utf-8" if kind == 2 else "ascii", "replace").rstrip(" \x00")
        else:
            value = raw
        out.append(
            Attribute(ident, NAMES.get(ident, f"attribute {ident:#06x}"), bool(fmt & 0x80), value)
        )
        pos += 5 + length
    return out


def read_attributes(transport: Transport, first: int = 0) -> list[Attribute]:
    """READ ATTRIBUTE values from ``first`` on (UnsupportedCommand where there is no MAM)."""
    alloc = 0x2000
    res = transport.execute(cdb.read_attribute(first, alloc=alloc), data_in=alloc)
    if not res.good:
        raise error_for("READ ATTRIBUTE", res.sense, res.status)
    return decode_attributes(res.data)
