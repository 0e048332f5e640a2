"""Standard INQUIRY data and the unit serial number page, decoded with pyscsi."""

from __future__ import annotations

from dataclasses import dataclass

from pyscsi.pyscsi.scsi_cdb_inquiry import Inquiry

from . import cdb
from .errors import error_for
from .transport import Transport

DEVICE_TYPES = {0x01: "tape", 0x08: "changer", 0x00: "disk", 0x05: "cd/dvd"}


@dataclass(frozen=True)
class InquiryData:
    """Who a logical unit says it is."""

    device_type: int
    vendor: str
    product: str
    revision: str
    serial: str | None
    removable: bool

    @property
    def kind(self) -> str:
        """``tape``, ``changer`` or another SPC peripheral type name."""
        return DEVICE_TYPES.get(self.device_type, f"type {self.device_type:#04x}")


def decode_standard(data: bytes) -> dict[str, object]:
    """Decode standard INQUIRY data (pyscsi) plus the identification strings."""
    if len(data) < 36:
        raise ValueError(f"standard INQUIRY data too short ({len(data)} bytes)")
    result = Inquiry.unmarshall_datain(bytearray(data), evpd=0)
    result["vendor"] = data[8:16].decode("ascii", "replace").strip()
    result["product"] = data[16:32].decode("ascii", "replace").strip()
    result["revision"] = data[32:36].decode("ascii", "replace").strip()
    return result


def decode_serial_page(data: bytes) -> str:
    """Decode VPD page 80h (unit serial number)."""
    if len(data) < 4 or data[1] != 0x80:
        raise ValueError("not a unit serial number VPD page")
    length = int.from_bytes(data[2:4], "big")
    return data[4 : 4 + length].decode("ascii", "replace").strip()


def inquire(transport: Transport) -> InquiryData:
    """Send INQUIRY (and the serial number page) and decode both."""
    res = transport.execute(cdb.inquiry(alloc=96), data_in=96)
    if not res.good:
        raise error_for("INQUIRY", res.sense, res.status)
    std = decode_standard(res.data)
    serial: str | None = None
    res = transport.execute(cdb.inquiry(evpd=True, page=0x80, alloc=255), data_in=255)
    if res.good:
        try:
            serial = decode_serial_page(res.data) or None
        except ValueError:
            serial = None
    return InquiryData(
        device_type=int(std["peripheral_device_type"]),  # type: ignore[call-overload]
        vendor=str(std["vendor"]),
        product=str(std["product"]),
        revision=str(std["revision"]),
        serial=serial,
        removable=bool(std.get("rmb")),
    )
