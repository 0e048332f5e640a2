"""A pool's tape library: loading and unloading cartridges through the changer.

``Library`` wraps the registered changer (``ctx.devices``) and keeps the
catalog's idea of where each cartridge is (``ctx.volumes``) in step with the
robot's moves. Moves are serialised across processes with a lock file, so two
jobs loading two drives never interleave their inventory checks and moves.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from tapir.appliance.plugin_api import DeviceInfo, PluginContext, TapirError
from tapir.hardware.changer import Inventory, MediaChanger
from tapir.hardware.drive import TapeDrive
from tapir.hardware.elements import ElementKind
from tapir.hardware.errors import HardwareError, MediumNotPresent, NotReady

from .reservation import hold

#: Seconds a drive may take to become ready after a load.
READY_TIMEOUT = 120.0


class VolumeUnavailable(TapirError):
    """The cartridge is not in the library (offline, in the vault, or unknown)."""


def open_drive(drive: DeviceInfo, *, ready_timeout: float = READY_TIMEOUT) -> TapeDrive:
    """Open a loaded drive in variable-block mode, ready and rewound."""
    tape = TapeDrive.open(drive.address, block_size=0)
    try:
        tape.wait_ready(timeout=ready_timeout)
        tape.set_block_size(0)
        tape.rewind()
    except BaseException:
        tape.close()
        raise
    return tape


class Library:
    """The changer named ``changer_name`` and the cartridges it moves."""

    def __init__(self, ctx: PluginContext, changer_name: str) -> None:
        if ctx.devices is None or ctx.volumes is None:
            raise TapirError("the tape plugin needs device and volume look-ups in its context")
        info = ctx.devices.get(changer_name)
        if info.kind != "changer":
            raise TapirError(f"device {changer_name!r} is a {info.kind}, not a changer")
        self.ctx = ctx
        self.info = info
        self._changer: MediaChanger | None = None

    @property
    def name(self) -> str:
        """The changer's registered name."""
        return self.info.name

    def changer(self) -> MediaChanger:
        """The changer, opened on first use."""
        if self._changer is None:
            self._changer = MediaChanger.open(self.info.address)
        return self._changer

    def close(self) -> None:
        """Release the changer's transport."""
        if self._changer is not None:
            changer, self._changer = self._changer, None
            changer.close()

    def inventory(self) -> Inventory:
        """A fresh inventory of the library."""
        return self.changer().inventory()

    def locate_volume(self, barcode: str) -> str:
        """Where a cartridge is: "slot N", "drive N", "mail N", or the catalog's location."""
        el = self.inventory().find(barcode)
        if el is not None:
            return el.name
        vol = self.ctx.volumes.get(barcode) if self.ctx.volumes else None
        where = vol.location if vol is not None and vol.location else "unknown"
        return f"not in library {self.name} (catalog: {where})"

    def mount(self, barcode: str, drive: DeviceInfo) -> TapeDrive:
        """Load ``barcode`` into ``drive`` and return the drive, ready at BOT.

        Another cartridge in that drive is unloaded to its home slot first. A
        cartridge that is not in the library raises VolumeUnavailable naming it
        and where the catalog says it is (offline, vault), after asking an operator
        for it (``ctx.request_operator``). The caller holds the
        drive's lease.
        """
        number = self._number(drive)
        with self._robot(f"mount {barcode}"):
            inv = self.inventory()
            el = inv.find(barcode)
            if el is None:
                message = (
                    f"cartridge {barcode} is needed but {self.locate_volume(barcode)}; "
                    "put it into the library (import it through a mail slot) and retry"
                )
                self.ctx.request_operator(f"insert cartridge {barcode}", message)
                raise VolumeUnavailable(message)
            if not (el.kind == ElementKind.DRIVE and el.number == number):
                target = inv.get(ElementKind.DRIVE, number)
                if target.full:
                    self._unload(drive, target.barcode)
                if el.kind == ElementKind.DRIVE:
                    # Left in another drive by a run that died: eject it there first.
                    self._eject(self._drive_device(el.number))
                self.ctx.logger.info("loading %s from %s into drive %d", barcode, el.name, number)
                self.changer().move((el.kind, el.number), (ElementKind.DRIVE, number))
            self._set_location(barcode, f"drive {number}")
        return open_drive(drive)

    def unmount(self, drive: DeviceInfo, tape: TapeDrive | None = None) -> None:
        """Unload ``drive`` and put its cartridge back into its home slot (if it has one)."""
        with self._robot("unmount"):
            el = self.inventory().get(ElementKind.DRIVE, self._number(drive))
            if tape is not None:
                with suppress(MediumNotPresent, NotReady):
                    tape.unload()
            if el.full:
                self._unload(drive, el.barcode, ejected=tape is not None)

    # --- internals --------------------------------------------------------

    @contextmanager
    def _robot(self, purpose: str) -> Iterator[None]:
        lock = hold(self.ctx, "changer", self.name, purpose=purpose)
        try:
            yield
        finally:
            lock.release()

    def _number(self, drive: DeviceInfo) -> int:
        if drive.changer != self.name or drive.drive_number is None:
            raise TapirError(f"drive {drive.name} is not a drive of changer {self.name}")
        return drive.drive_number

    def _drive_device(self, number: int) -> DeviceInfo:
        assert self.ctx.devices is not None
        for d in self.ctx.devices.drives_of(self.name):
            if d.drive_number == number:
                return d
        raise TapirError(f"drive {number} of {self.name} is not registered; unload it by hand")

    def _eject(self, drive: DeviceInfo) -> None:
        try:
            with TapeDrive.open(drive.address, block_size=0) as tape:
                tape.unload()
        except (MediumNotPresent, NotReady):
            pass

    def _unload(self, drive: DeviceInfo, barcode: str | None, *, ejected: bool = False) -> None:
        if not ejected:
            self._eject(drive)
        try:
            slot = self.changer().unload(self._number(drive))
        except HardwareError as exc:
            raise TapirError(f"cannot unload drive {drive.name} ({barcode}): {exc}") from exc
        self.ctx.logger.info("unloaded %s from %s into slot %d", barcode, drive.name, slot)
        if barcode:
            self._set_location(barcode, f"slot {slot}")

    def _set_location(self, barcode: str, location: str) -> None:
        assert self.ctx.volumes is not None
        vol = self.ctx.volumes.get(barcode)
        if vol is not None and vol.location != location:
            self.ctx.volumes.save(dataclasses.replace(vol, location=location))
