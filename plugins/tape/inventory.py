"""Bringing the catalog's volume rows up to date with what a tape library holds.

The changer's inventory is the truth about where cartridges are. New barcodes
become volume rows (cleaning cartridges with a use count, data cartridges as
unlabelled ``scratch`` volumes of no pool until ``tapir tape label``), known
ones get their location, and cartridges that left the library are marked
``offline``, unless their row already says where they went (``vault: NOTE``).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from tapir.appliance.plugin_api import PluginContext, TapirError, VolumeInfo, VolumeRegistry
from tapir.hardware.changer import Inventory
from tapir.hardware.elements import Element

#: LTO barcode media ids: L1..L9 rewritable, LT..LZ the WORM cartridges of LTO-3..9.
_LTO_MEDIA = re.compile(r"^.*L([1-9TUVWXYZ])$")
_WORM_GENERATION = {"T": 3, "U": 4, "V": 5, "W": 6, "X": 7, "Y": 8, "Z": 9}
#: Locations that say the cartridge sits in a library element.
_IN_LIBRARY = re.compile(r"^(?:slot|drive|mail) \d+$")


def media_type_of(barcode: str) -> tuple[str, bool]:
    """(media type, WORM) from an LTO barcode's last two characters; ("", False) if unknown."""
    match = _LTO_MEDIA.match(barcode.upper())
    if not match:
        return "", False
    code = match.group(1)
    if code.isdigit():
        return f"LTO-{code}", False
    return f"LTO-{_WORM_GENERATION[code]} WORM", True


def location_of(element: Element) -> str:
    """The volume location text of a library element: ``slot N``, ``drive N``, ``mail N``."""
    return f"{element.kind.value} {element.number}"


def is_in_library(location: str) -> bool:
    """True when a volume's location names a library element (slot, drive, mail slot)."""
    return bool(_IN_LIBRARY.match(location))


@dataclass
class InventoryReport:
    """What one inventory changed in the catalog (barcodes)."""

    changer: str
    created: list[str] = field(default_factory=list)
    cleaning_created: list[str] = field(default_factory=list)
    moved: list[tuple[str, str, str]] = field(default_factory=list)  # barcode, before, after
    offline: list[str] = field(default_factory=list)
    unchanged: int = 0
    #: Full elements whose cartridge has no readable barcode (location text).
    no_barcode: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        doc = dataclasses.asdict(self)
        doc["moved"] = [{"barcode": b, "from": f, "to": t} for b, f, t in self.moved]
        return doc


def cartridges(inventory: Inventory) -> dict[str, Element]:
    """Barcode -> element of every barcoded cartridge in slots, mail slots and drives."""
    found: dict[str, Element] = {}
    for element in (*inventory.slots, *inventory.mail_slots, *inventory.drives):
        if element.full and element.barcode:
            found[element.barcode] = element
    return found


def sync_inventory(
    ctx: PluginContext, changer: str, inventory: Inventory, *, dry_run: bool = False
) -> InventoryReport:
    """Create, relocate and mark offline volume rows after ``inventory`` of ``changer``.

    A volume missing from the library is marked ``offline`` only when its row said it
    was in a library element and it does not belong to a pool of another changer
    (that library answers for it). Nothing is saved with ``dry_run``.
    """
    volumes = registry(ctx)
    report = InventoryReport(changer=changer)
    present = cartridges(inventory)
    for element in (*inventory.slots, *inventory.mail_slots, *inventory.drives):
        if element.full and not element.barcode:
            report.no_barcode.append(location_of(element))
    for barcode, element in sorted(present.items()):
        where = location_of(element)
        row = volumes.get(barcode)
        if row is None:
            new = new_volume(barcode, where, cleaning=element.cleaning)
            if not dry_run:
                volumes.save(new)
            (report.cleaning_created if new.cleaning else report.created).append(barcode)
        elif row.location != where:
            report.moved.append((barcode, row.location, where))
            if not dry_run:
                volumes.save(dataclasses.replace(row, location=where))
        else:
            report.unchanged += 1
    for row in volumes.list():
        if row.label in present or not is_in_library(row.location):
            continue
        if _belongs_elsewhere(ctx, row, changer):
            continue
        report.offline.append(row.label)
        if not dry_run:
            volumes.save(dataclasses.replace(row, location="offline"))
    return report


def new_volume(barcode: str, location: str, *, cleaning: bool) -> VolumeInfo:
    """The row of a cartridge seen for the first time."""
    media_type, worm = media_type_of(barcode)
    if cleaning:
        return VolumeInfo(
            label=barcode,
            state="cleaning",
            cleaning=True,
            location=location,
            media_type=media_type,
        )
    return VolumeInfo(
        label=barcode, state="scratch", location=location, media_type=media_type, worm=worm
    )


def _belongs_elsewhere(ctx: PluginContext, row: VolumeInfo, changer: str) -> bool:
    if row.pool is None:
        return False
    lookup = ctx.catalog.get("pool_info")
    if lookup is None:
        return False
    try:
        info: Any = lookup(row.pool)
    except KeyError:
        return False
    other = (info.options or {}).get("changer")
    return bool(other) and other != changer


def registry(ctx: PluginContext) -> VolumeRegistry:
    if ctx.volumes is None:
        raise TapirError("this plugin context has no volume registry (not a media plugin?)")
    return ctx.volumes


__all__ = [
    "InventoryReport",
    "cartridges",
    "is_in_library",
    "location_of",
    "media_type_of",
    "new_volume",
    "registry",
    "sync_inventory",
]
