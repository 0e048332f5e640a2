"""Cleaning a drive with a cleaning cartridge and counting the cartridge's uses.

A cleaning cartridge wears out after a number of uses (the vendor says how many;
50 is the usual LTO figure). Tapir counts each use in the volume row and retires
the cartridge when it reaches the maximum, so it is not loaded again to no effect.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from tapir.appliance.plugin_api import DeviceInfo, PluginContext, TapirError, VolumeInfo
from tapir.hardware.drive import TapeDrive
from tapir.hardware.elements import ElementKind
from tapir.hardware.errors import MediumNotPresent, NotReady

from .inventory import registry, sync_inventory
from .reservation import hold, reserve_drive

DEFAULT_MAX_USES = 50
#: Seconds a cleaning cycle may take before Tapir gives up waiting.
CLEANING_TIMEOUT = 600.0
_CLEANING_CARTRIDGE_INSTALLED = 0x30  # ASC 30h: incompatible medium / cleaning cartridge


@dataclass
class CleaningResult:
    """One cleaning: which cartridge cleaned which drive, and its count afterwards."""

    drive: str
    cartridge: str
    uses: int
    max_uses: int
    retired: bool

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dataclasses.asdict(self)


def choose_cleaner(volumes: list[VolumeInfo], max_uses: int) -> VolumeInfo | None:
    """The cleaning cartridge in a slot with the most uses left (fewest uses), if any."""
    usable = [
        v
        for v in volumes
        if v.cleaning
        and v.state == "cleaning"
        and v.cleaning_uses < max_uses
        and v.location.startswith("slot ")
    ]
    return min(usable, key=lambda v: (v.cleaning_uses, v.label), default=None)


def clean_drive(
    ctx: PluginContext,
    changer: str,
    drive: DeviceInfo,
    *,
    max_uses: int = DEFAULT_MAX_USES,
    timeout: float = CLEANING_TIMEOUT,
) -> CleaningResult:
    """Load a cleaning cartridge into ``drive``, wait for the cycle, put it back, count it.

    The drive is reserved first (a running backup keeps it), and the library's
    inventory is synchronised so the choice of cartridge is made on fresh rows.
    """
    from .library import Library

    if max_uses < 1:
        raise ValueError("the maximum number of cleaning uses must be at least 1")
    if drive.changer != changer or drive.drive_number is None:
        raise TapirError(f"drive {drive.name} is not a drive of changer {changer}")
    volumes = registry(ctx)
    library = Library(ctx, changer)
    try:
        with reserve_drive(ctx, [drive], purpose="cleaning"):
            robot = hold(ctx, "changer", changer, purpose="cleaning")
            try:
                inventory = library.inventory()
                sync_inventory(ctx, changer, inventory)
                cleaner = choose_cleaner(volumes.list(state="cleaning"), max_uses)
                if cleaner is None:
                    raise TapirError(
                        f"no usable cleaning cartridge (CLN..., fewer than {max_uses} uses) "
                        f"in a slot of {changer}; import one and run 'tapir tape inventory'"
                    )
                if inventory.get(ElementKind.DRIVE, drive.drive_number).full:
                    raise TapirError(
                        f"drive {drive.name} holds a cartridge; unload it before cleaning"
                    )
                slot = int(cleaner.location.split()[1])
                library.changer().load(slot, drive.drive_number)
                try:
                    _wait_cleaning(drive, timeout)
                finally:
                    library.changer().unload(drive.drive_number, slot)
            finally:
                robot.release()
    finally:
        library.close()
    uses = cleaner.cleaning_uses + 1
    retired = uses >= max_uses
    volumes.save(
        dataclasses.replace(
            cleaner,
            cleaning_uses=uses,
            location=f"slot {slot}",
            state="retired" if retired else "cleaning",
        )
    )
    ctx.logger.info(
        "cleaned drive %s with %s (use %d of %d)", drive.name, cleaner.label, uses, max_uses
    )
    return CleaningResult(drive.name, cleaner.label, uses, max_uses, retired)


def _wait_cleaning(drive: DeviceInfo, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with TapeDrive.open(drive.address, block_size=0) as tape:
        while True:
            try:
                sense = tape.test_unit_ready()
            except (MediumNotPresent, NotReady):
                sense = None
            if sense is None or sense.asc == _CLEANING_CARTRIDGE_INSTALLED:
                break
            if time.monotonic() > deadline:
                raise TapirError(f"cleaning of {drive.name} did not finish within {timeout:.0f} s")
            time.sleep(1.0)
        with contextlib.suppress(MediumNotPresent, NotReady):
            tape.unload()
