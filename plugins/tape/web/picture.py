"""What the library page draws: every slot, mail slot and drive with its cartridge.

The robot's inventory says where each cartridge is; the volume rows say what it
is (pool, state, media set, labelled, cleaning uses); the reservation locks say
which drives a job holds. A cartridge the catalog does not know yet is shown as
such (an inventory adds it).
"""

from __future__ import annotations

from dataclasses import dataclass

from tapir.appliance.plugin_api import DeviceInfo, PluginContext, VolumeInfo
from tapir.hardware.changer import Inventory
from tapir.hardware.elements import Element

from ..reservation import named_lock


@dataclass
class Place:
    """One element of the library and what sits in it."""

    kind: str  # slot, mail, drive
    number: int
    full: bool
    barcode: str | None
    volume: VolumeInfo | None = None
    device: DeviceInfo | None = None  # the registered drive at this place
    busy: str = ""  # who holds the drive ("" when free)

    @property
    def name(self) -> str:
        """``slot 3``, ``mail 1``, ``drive 0``: the element as operators call it."""
        return f"{self.kind} {self.number}"

    @property
    def state(self) -> str:
        """The volume state to colour the cartridge by (``unknown`` before an inventory)."""
        if not self.full:
            return "empty"
        if self.volume is None:
            return "unknown"
        return self.volume.state

    @property
    def ref(self) -> str:
        """The form value naming this element (``slot:3``)."""
        return f"{self.kind}:{self.number}"


@dataclass
class Picture:
    """The whole library."""

    changer: str
    slots: list[Place]
    mail_slots: list[Place]
    drives: list[Place]
    offline: list[VolumeInfo]  # volumes of this library's pools that are out

    def places(self) -> list[Place]:
        """Every element, drives first."""
        return [*self.drives, *self.slots, *self.mail_slots]

    def counts(self) -> dict[str, int]:
        """Cartridges by state (the page's legend)."""
        counts: dict[str, int] = {}
        for place in self.places():
            if place.full:
                counts[place.state] = counts.get(place.state, 0) + 1
        return counts


def drive_holder(ctx: PluginContext, drive: DeviceInfo) -> str:
    """Who holds the drive's reservation ("" when free); never waits."""
    lock = named_lock(ctx, "drive", drive.name, "web panel look")
    if lock.try_acquire():
        lock.release()
        return ""
    return lock.current_holder() or "in use"


def picture(ctx: PluginContext, changer: str, inventory: Inventory) -> Picture:
    """The library ``changer`` as ``inventory`` shows it, with the catalog's volume rows."""
    assert ctx.volumes is not None and ctx.devices is not None
    rows = {v.label: v for v in ctx.volumes.list()}
    devices = {d.drive_number: d for d in ctx.devices.drives_of(changer)}

    def place(element: Element) -> Place:
        barcode = element.barcode if element.full else None
        return Place(
            element.kind.value,
            element.number,
            element.full,
            barcode,
            rows.get(barcode) if barcode else None,
        )

    drives = []
    for element in inventory.drives:
        p = place(element)
        p.device = devices.get(element.number)
        if p.device is not None:
            p.busy = drive_holder(ctx, p.device)
        drives.append(p)
    present = {e.barcode for e in inventory.all() if e.full and e.barcode}
    out = [
        v
        for v in rows.values()
        if v.label not in present and (v.location == "offline" or v.location.startswith("vault:"))
    ]
    return Picture(
        changer,
        [place(e) for e in inventory.slots],
        [place(e) for e in inventory.mail_slots],
        drives,
        sorted(out, key=lambda v: v.label),
    )
