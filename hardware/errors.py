"""Exceptions of the hardware layer: one class per condition a caller handles differently."""

from __future__ import annotations

from .sense import Sense, SenseKey


class HardwareError(Exception):
    """Base of every error raised by tapir.hardware."""


class CommandFailed(HardwareError):
    """A SCSI command ended in an error status the layer has no better name for."""

    def __init__(self, operation: str, sense: Sense | None, status: int = 2) -> None:
        self.operation = operation
        self.sense = sense
        self.status = status
        detail = str(sense) if sense else f"status {status:#04x}, no sense data"
        super().__init__(f"{operation} failed: {detail}")


class NotReady(CommandFailed):
    """NOT READY: the unit is becoming ready, offline, or has no medium."""


class MediumNotPresent(NotReady):
    """No cartridge in the drive (NOT READY 3A/xx)."""


class UnitAttention(CommandFailed):
    """UNIT ATTENTION: reset, medium changed, door opened; state must be re-read."""


class IllegalRequest(CommandFailed):
    """ILLEGAL REQUEST: the device refused the command or a field in it."""


class UnsupportedCommand(IllegalRequest):
    """The device does not implement this command (ILLEGAL REQUEST 20/00)."""


class DeviceTimeout(HardwareError):
    """The device did not become ready within the time allowed."""


# --- changer ----------------------------------------------------------------


class ChangerError(HardwareError):
    """A media changer request that cannot be carried out."""


class UnknownElement(ChangerError, ValueError):
    """No such slot, mail slot or drive number in this library."""


class SlotEmpty(ChangerError):
    """The source element holds no cartridge."""


class DestinationFull(ChangerError):
    """The destination element already holds a cartridge."""


class DriveLoaded(DestinationFull):
    """The destination drive still holds a cartridge; unload it first."""


class RemovalPrevented(ChangerError):
    """A drive or the library prevents medium removal (PREVENT MEDIUM REMOVAL)."""


class NoHomeSlot(ChangerError):
    """The library does not know where the cartridge came from and no slot was given."""


# --- tape -------------------------------------------------------------------


class TapeCondition(HardwareError):
    """A tape condition the caller is expected to handle (not a device failure)."""


class FilemarkReached(TapeCondition):
    """A read met a filemark: the end of a tape file. The tape is now past it."""


class EndOfData(TapeCondition):
    """BLANK CHECK: nothing is recorded beyond this point."""


class EarlyWarning(TapeCondition):
    """End-of-medium early warning: the data WAS written; close the stream and
    continue on the next cartridge. Not an error: further writes still succeed
    for a while (enough for filemarks and a trailer)."""


class EndOfMedium(TapeCondition):
    """VOLUME OVERFLOW or physical end of medium: ``unwritten`` bytes did not fit."""

    def __init__(self, message: str, unwritten: int) -> None:
        self.unwritten = unwritten
        super().__init__(message)


class BlockTooLarge(TapeCondition):
    """The block on tape is larger than the read asked for; it was skipped."""

    def __init__(self, message: str, block_size: int | None) -> None:
        self.block_size = block_size
        super().__init__(message)


class WriteProtected(CommandFailed):
    """DATA PROTECT: the cartridge or the drive is write-protected."""


class PositionUnknown(HardwareError):
    """The drive layer lost track of the tape position (rewind to recover)."""


class CleaningRequired(TapeCondition):
    """The drive asks for a cleaning cartridge."""


def error_for(operation: str, sense: Sense | None, status: int = 2) -> CommandFailed:
    """The most specific CommandFailed subclass for a failed command."""
    if sense is None:
        return CommandFailed(operation, sense, status)
    if sense.key == SenseKey.NOT_READY:
        if sense.asc == 0x3A:
            return MediumNotPresent(operation, sense, status)
        return NotReady(operation, sense, status)
    if sense.key == SenseKey.UNIT_ATTENTION:
        return UnitAttention(operation, sense, status)
    if sense.key == SenseKey.DATA_PROTECT:
        return WriteProtected(operation, sense, status)
    if sense.key == SenseKey.ILLEGAL_REQUEST:
        if (sense.asc, sense.ascq) == (0x20, 0x00):
            return UnsupportedCommand(operation, sense, status)
        return IllegalRequest(operation, sense, status)
    return CommandFailed(operation, sense, status)
