"""Tape changers and drives registered in the catalog, so operators and jobs name them."""

from __future__ import annotations

from sqlalchemy import select

from ...hardware.changer import MediaChanger
from ...hardware.drive import TapeDrive
from ...hardware.errors import HardwareError
from ...hardware.inquiry import InquiryData
from ...hardware.transport import TransportError
from ..catalog.models import Device
from ..plugin_api.errors import TapirError
from .context import EngineContext
from .pools import validate_name

KINDS = ("changer", "drive")


def probe(kind: str, address: str) -> InquiryData:
    """Ask the device who it is; refuse one that is not the kind it is registered as."""
    opener = MediaChanger.open if kind == "changer" else TapeDrive.open
    try:
        with opener(address) as dev:
            info = dev.inquiry()
    except (HardwareError, TransportError, OSError) as exc:
        raise TapirError(f"cannot reach the {kind} at {address}: {exc}") from exc
    expected = "changer" if kind == "changer" else "tape"
    if info.kind != expected:
        raise TapirError(f"{address} is a {info.kind} device, not a {kind}")
    return info


def register_device(
    env: EngineContext,
    name: str,
    kind: str,
    address: str,
    *,
    changer: str | None = None,
    drive_number: int | None = None,
    check: bool = True,
) -> Device:
    """Register a changer or a drive; with ``check`` it must answer INQUIRY as that kind."""
    validate_name("device", name)
    if kind not in KINDS:
        raise ValueError(f"device kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if kind == "changer" and (changer is not None or drive_number is not None):
        raise ValueError("--changer and --number describe a drive, not a changer")
    if (changer is None) != (drive_number is None):
        raise ValueError("a drive in a library needs both its changer and its drive number")
    if drive_number is not None and drive_number < 0:
        raise ValueError("drive numbers start at 0")
    info = probe(kind, address) if check else None
    with env.catalog.session() as s:
        if s.scalar(select(Device.id).where(Device.name == name)) is not None:
            raise ValueError(f"a device named {name!r} already exists")
        taken = s.scalar(select(Device.name).where(Device.address == address))
        if taken is not None:
            raise ValueError(f"{address} is already registered as {taken!r}")
        changer_id = None
        if changer is not None:
            row = s.scalar(select(Device).where(Device.name == changer))
            if row is None or row.kind != "changer":
                raise KeyError(f"no changer named {changer!r}")
            changer_id = row.id
            clash = s.scalar(
                select(Device.name).where(
                    Device.changer_id == changer_id, Device.drive_number == drive_number
                )
            )
            if clash is not None:
                raise ValueError(f"drive {drive_number} of {changer} is already {clash!r}")
        device = Device(
            name=name,
            kind=kind,
            address=address,
            vendor=info.vendor if info else "",
            model=info.product if info else "",
            serial=(info.serial or "") if info else "",
            changer_id=changer_id,
            drive_number=drive_number,
        )
        s.add(device)
        s.flush()
        return device


def devices(env: EngineContext) -> list[Device]:
    with env.catalog.session() as s:
        return list(s.scalars(select(Device).order_by(Device.kind, Device.name)))


def resolve(env: EngineContext, name: str) -> str:
    """The path or URL of a registered device; KeyError naming what exists otherwise."""
    with env.catalog.session() as s:
        address = s.scalar(select(Device.address).where(Device.name == name))
        if address is None:
            known = sorted(s.scalars(select(Device.name)))
            raise KeyError(f"no device named {name!r} (registered: {', '.join(known) or 'none'})")
        return address


def remove_device(env: EngineContext, name: str) -> None:
    with env.catalog.session() as s:
        device = s.scalar(select(Device).where(Device.name == name))
        if device is None:
            raise KeyError(f"no device named {name!r}")
        if device.kind == "changer":
            drives = list(s.scalars(select(Device.name).where(Device.changer_id == device.id)))
            if drives:
                raise ValueError(
                    f"changer {name!r} still has drives registered: {', '.join(drives)}"
                )
        s.delete(device)
