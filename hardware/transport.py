"""The one interface every SCSI transport offers, and opening one by name.

A transport executes a CDB with optional data out or data in and returns the
status, the data, the residual and the decoded sense. It never interprets a
CHECK CONDITION: deciding what a sense means is the device layer's job.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from enum import IntEnum

from .sense import Sense


class Status(IntEnum):
    """SAM SCSI status codes."""

    GOOD = 0x00
    CHECK_CONDITION = 0x02
    CONDITION_MET = 0x04
    BUSY = 0x08
    RESERVATION_CONFLICT = 0x18
    TASK_SET_FULL = 0x28
    ACA_ACTIVE = 0x30
    TASK_ABORTED = 0x40


@dataclass
class Result:
    """What one command returned.

    ``data`` holds the bytes the device sent (data-in commands), trimmed by the
    residual when the status is GOOD. After CHECK CONDITION it is the whole
    receive buffer: how much of it is valid is for the command set to say (for
    SSC reads, the sense INFORMATION field), since transports disagree on the
    residual there. ``residual`` is the requested length minus what was
    transferred, as the transport reported it (0 when it reported nothing).
    """

    status: Status
    data: bytes = b""
    residual: int = 0
    sense: Sense | None = None
    cdb: bytes = field(default=b"", repr=False)
    #: the whole receive buffer when ``data`` was trimmed by a residual, for the
    #: command sets that must work around a device misreporting it.
    buffer: bytes | None = field(default=None, repr=False)

    @property
    def good(self) -> bool:
        """True when the command completed with GOOD status."""
        return self.status == Status.GOOD


class TransportError(OSError):
    """The command could not be delivered or its answer was lost (not a SCSI status)."""


DEFAULT_TIMEOUT = 60.0
"""Seconds; long operations (rewind, load, erase, space to EOD) pass their own."""


class Transport(abc.ABC):
    """A connection to one SCSI logical unit."""

    #: how the unit is attached, for operators ("iscsi", "sg").
    kind: str = "?"
    #: the path or URL it was opened with.
    address: str = ""

    @abc.abstractmethod
    def execute(
        self,
        cdb: bytes,
        *,
        data_out: bytes | bytearray | memoryview | None = None,
        data_in: int = 0,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Result:
        """Run one CDB; ``data_in`` is the number of bytes to receive (0: none).

        Raises TransportError when the command could not be completed at the
        transport level; every SCSI status, CHECK CONDITION included, is returned.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Release the connection; further commands raise TransportError."""

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_transport(address: str) -> Transport:
    """Open ``address``: an ``iscsi://host[:port]/target-iqn/lun`` URL or a ``/dev/sgN`` path.

    Raises ValueError for an address of neither form and TransportError when
    the device cannot be reached.
    """
    if address.startswith("iscsi://"):
        from .iscsi import IscsiTransport

        return IscsiTransport(address)
    if address.startswith("/"):
        from .sg import SgTransport

        return SgTransport(address)
    raise ValueError(
        f"unknown device {address!r}: expected a /dev/sgN path or an iscsi://host:port/iqn/lun URL"
    )
