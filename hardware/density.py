"""REPORT DENSITY SUPPORT data: what a drive (or the loaded medium) can record."""

from __future__ import annotations

from dataclasses import dataclass

from . import cdb
from .errors import error_for
from .transport import Transport

_DESCRIPTOR = 52


@dataclass(frozen=True)
class Density:
    """One density descriptor."""

    primary_code: int
    secondary_code: int
    writable: bool
    default: bool
    capacity_mb: int
    tracks: int
    organization: str
    name: str
    description: str


def decode_density_support(data: bytes) -> list[Density]:
    """Decode REPORT DENSITY SUPPORT (density descriptors); ValueError when truncated."""
    if len(data) < 4:
        raise ValueError("density support data too short")
    end = min(len(data), 2 + int.from_bytes(data[0:2], "big"))
    out, pos = [], 4
    while pos + _DESCRIPTOR <= end:
        d = data[pos : pos + _DESCRIPTOR]
        out.append(
            Density(
                primary_code=d[0],
                secondary_code=d[1],
                writable=bool(d[2] & 0x80),
                default=bool(d[2] & 0x20),
                tracks=int.from_bytes(d[10:12], "big"),
                capacity_mb=int.from_bytes(d[12:16], "big"),
                organization=d[16:24].decode("ascii", "replace").strip(),
                name=d[24:32].decode("ascii", "replace").strip(),
                description=d[32:52].decode("ascii", "replace").strip(),
            )
        )
        pos += _DESCRIPTOR
    if pos != end:
        raise ValueError("density support data ends inside a descriptor")
    return out


def report_density_support(transport: Transport, media: bool = False) -> list[Density]:
    """Send REPORT DENSITY SUPPORT and decode it."""
    alloc = 0x2000
    res = transport.execute(cdb.report_density_support(media, alloc), data_in=alloc)
    if not res.good:
        raise error_for("REPORT DENSITY SUPPORT", res.sense, res.status)
    return decode_density_support(res.data)
