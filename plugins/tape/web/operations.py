"""The library actions an operator starts from the panel, on the plugin's own modules.

Moves, loads and unloads take the changer's lock (as every job's mount does) and
never wait for a drive a job holds: they fail at once naming the holder. Each
action ends with an inventory, so the volume rows follow the cartridges. Import,
export, labelling and cleaning are the same functions ``tapir tape`` runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tapir.appliance.plugin_api import DeviceInfo, PluginContext, TapirError
from tapir.hardware.elements import ElementKind
from tapir.hardware.errors import HardwareError
from tapir.hardware.tapealert import read_tapealert

from ..inventory import InventoryReport, sync_inventory
from ..labelling import LabelOutcome, label_volumes
from ..library import Library
from ..reservation import hold, named_lock

KINDS = {"slot": ElementKind.SLOT, "mail": ElementKind.MAIL, "drive": ElementKind.DRIVE}


def parse_place(text: str) -> tuple[ElementKind, int]:
    """``slot:3`` (or ``slot 3``) as an element reference; ValueError when malformed."""
    kind, _, number = text.replace(" ", ":").partition(":")
    if kind not in KINDS or not number.isdigit():
        raise ValueError(f"not a library element: {text!r} (slot:N, mail:N or drive:N)")
    return KINDS[kind], int(number)


def drive_of(ctx: PluginContext, changer: str, number: int) -> DeviceInfo:
    """The registered drive ``number`` of ``changer``; TapirError when it is not registered."""
    assert ctx.devices is not None
    for drive in ctx.devices.drives_of(changer):
        if drive.drive_number == number:
            return drive
    raise TapirError(f"drive {number} of {changer} is not registered ('tapir device add')")


def _with_robot(
    ctx: PluginContext, changer: str, purpose: str, work: Callable[[Library], str]
) -> tuple[str, InventoryReport]:
    library = Library(ctx, changer)
    try:
        robot = hold(ctx, "changer", changer, purpose=purpose, wait=False)
        try:
            message = work(library)
        except HardwareError as exc:
            raise TapirError(f"{purpose}: {exc}") from exc
        finally:
            robot.release()
        return message, sync_inventory(ctx, changer, library.inventory())
    finally:
        library.close()


def _free_drive(ctx: PluginContext, drive: DeviceInfo, purpose: str) -> Any:
    lock = named_lock(ctx, "drive", drive.name, purpose)
    if not lock.try_acquire():
        raise TapirError(f"drive {drive.name} is in use ({lock.current_holder() or 'a job'})")
    return lock


def move(ctx: PluginContext, changer: str, source: str, destination: str) -> str:
    """Move a cartridge between slots and mail slots (drives: use load and unload)."""
    src, dst = parse_place(source), parse_place(destination)
    if ElementKind.DRIVE in (src[0], dst[0]):
        raise ValueError("to move a cartridge into or out of a drive, load or unload the drive")

    def work(library: Library) -> str:
        element = library.inventory().get(*src)
        library.changer().move(src, dst)
        what = element.barcode or "the cartridge"
        return f"moved {what} from {src[0].value} {src[1]} to {dst[0].value} {dst[1]}"

    message, _ = _with_robot(ctx, changer, f"move {source} to {destination}", work)
    ctx.audit("move", changer, source=source, destination=destination)
    return message


def load(ctx: PluginContext, changer: str, barcode: str, drive_number: int) -> str:
    """Load cartridge ``barcode`` into drive ``drive_number`` (refused while a job uses it)."""
    drive = drive_of(ctx, changer, drive_number)
    lease = _free_drive(ctx, drive, f"web load {barcode}")
    try:
        library = Library(ctx, changer)
        try:
            tape = library.mount(barcode, drive)
            tape.close()
            sync_inventory(ctx, changer, library.inventory())
        except HardwareError as exc:
            raise TapirError(f"cannot load {barcode}: {exc}") from exc
        finally:
            library.close()
    finally:
        lease.release()
    ctx.audit("load", barcode, changer=changer, drive=drive.name)
    return f"loaded {barcode} into {drive.name}"


def unload(ctx: PluginContext, changer: str, drive_number: int) -> str:
    """Unload drive ``drive_number`` into its cartridge's home slot."""
    drive = drive_of(ctx, changer, drive_number)
    lease = _free_drive(ctx, drive, "web unload")
    try:
        library = Library(ctx, changer)
        try:
            element = library.inventory().get(ElementKind.DRIVE, drive_number)
            if not element.full:
                raise TapirError(f"{drive.name} is empty")
            library.unmount(drive)
            sync_inventory(ctx, changer, library.inventory())
        except HardwareError as exc:
            raise TapirError(f"cannot unload {drive.name}: {exc}") from exc
        finally:
            library.close()
    finally:
        lease.release()
    ctx.audit("unload", element.barcode or drive.name, changer=changer, drive=drive.name)
    return f"unloaded {element.barcode or 'the cartridge'} from {drive.name}"


def inventory(ctx: PluginContext, changer: str) -> InventoryReport:
    """Read the library's inventory and bring the volume rows up to date."""
    library = Library(ctx, changer)
    try:
        return sync_inventory(ctx, changer, library.inventory())
    finally:
        library.close()


def label(
    ctx: PluginContext,
    changer: str,
    barcodes: list[str],
    *,
    pool: str | None,
    force: bool = False,
) -> list[LabelOutcome]:
    """Label ``barcodes`` for ``pool`` (None: common scratch); a forced label is audited."""
    assert ctx.devices is not None
    drives = ctx.devices.drives_of(changer)
    if not drives:
        raise TapirError(f"changer {changer} has no registered drives ('tapir device add')")
    outcomes = label_volumes(ctx, changer, drives, barcodes, pool=pool, force=force)
    for outcome in outcomes:
        if outcome.forced:
            ctx.audit(
                "label.overwrite",
                outcome.barcode,
                pool=pool,
                changer=changer,
                reason=outcome.message,
            )
    return outcomes


def tape_alerts(ctx: PluginContext, drive: DeviceInfo) -> list[str]:
    """The drive's active TapeAlert flags (reading them clears them on most drives)."""
    from tapir.hardware.drive import TapeDrive

    lease = _free_drive(ctx, drive, "web TapeAlert")
    try:
        with TapeDrive.open(drive.address, block_size=0) as tape:
            flags = [f"{a.flag}: {a.message}" for a in read_tapealert(tape.transport)]
        # Reading clears them on the drive: the catalog keeps what was seen.
        record = ctx.catalog.get("record_tape_alerts")
        if record is not None:
            record(drive.name, flags)
        return flags
    except HardwareError as exc:
        raise TapirError(f"cannot read the TapeAlert flags of {drive.name}: {exc}") from exc
    finally:
        lease.release()
