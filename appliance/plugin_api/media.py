"""Catalog access for media plugins: the volumes of pools and the registered devices.

A media plugin that manages removable media (a tape library) keeps its volume rows
in the catalog through a :class:`VolumeRegistry` and finds its changer and drives
through a :class:`DeviceLookup`. Both arrive in :attr:`PluginContext.volumes` and
:attr:`PluginContext.devices`; the engine fills them for media plugins only.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

#: Life cycle of a volume (see docs/design/tape.md).
VOLUME_STATES = (
    "scratch",  # empty or expired and relabelled, may be taken by any write
    "writable",  # part of a media set, more may be appended
    "full",  # part of a media set, nothing more fits (or the set was sealed)
    "expired",  # its media set's retention ended, the data may be overwritten
    "recyclable",  # expired and released for reuse by the allocation policy
    "error",  # failed a read or write; kept out of allocation until checked
    "retired",  # worn out or damaged, never written again
    "cleaning",  # a cleaning cartridge (CLN*)
)

#: Where a volume is; ``N`` is a whole number, ``NOTE`` free text. "" means unknown.
VOLUME_LOCATIONS = ("slot N", "drive N", "mail N", "offline", "vault: NOTE")


@dataclass(frozen=True)
class VolumeInfo:
    """One volume (a tape cartridge) as the catalog records it.

    ``label`` (the barcode) identifies the volume and is unique across the
    appliance. ``pool`` is the pool's name, or None for a volume not assigned to a
    pool. Times are time-zone aware (UTC). ``id`` and ``created_at`` are filled in
    by the catalog and ignored by :meth:`VolumeRegistry.save`. Change a volume
    with :func:`dataclasses.replace` and save the result.
    """

    label: str
    pool: str | None = None
    uuid: str | None = None  # written in the media label
    state: str = "scratch"
    location: str = ""
    media_set: str | None = None  # uuid of the media set the volume belongs to
    media_set_seq: int | None = None  # position in the media set, from 0
    bytes_used: int = 0
    bytes_total: int | None = None
    worm: bool = False
    cleaning: bool = False
    cleaning_uses: int = 0
    expires_at: datetime | None = None
    last_written_at: datetime | None = None
    labeled: bool = False  # a media label was written on the volume
    media_type: str = ""  # e.g. "LTO-8" or the drive's density code as text
    error_count: int = 0
    note: str = ""
    id: int | None = None
    created_at: datetime | None = None


class VolumeRegistry(Protocol):
    """Volume rows of the catalog. Every change is written to the audit log.

    Refusals raise ``KeyError`` (an unknown pool or volume) or ``ValueError`` (a
    field out of range, an unknown state or location, a label that already names
    another cartridge); nothing is changed then.
    """

    def list(
        self,
        pool: str | None = None,
        state: str | None = None,
        media_set: str | None = None,
    ) -> builtins.list[VolumeInfo]:
        """Volumes matching every given filter, by media set, sequence number and label."""

    def get(self, label: str) -> VolumeInfo | None:
        """The volume labelled ``label``, or None."""

    def save(self, info: VolumeInfo) -> VolumeInfo:
        """Insert the volume, or update the one with the same label; returns it as stored.

        The pool is given by name and must exist. Refused: a uuid differing from the
        one recorded for this label, or recorded for another label (two cartridges
        under one barcode, or one under two); moving a ``writable`` or ``full``
        volume to another pool (its data belongs to its media set).
        """

    def delete(self, label: str) -> None:
        """Remove the volume's row (nothing on the medium changes); KeyError if unknown."""


@dataclass(frozen=True)
class DeviceInfo:
    """A registered tape changer or drive (``tapir device register``).

    ``changer`` and ``drive_number`` are set for a drive inside a library: the
    changer's name and the drive's element number there (0..M).
    """

    name: str
    kind: str  # "changer" or "drive"
    address: str  # /dev/sgN or an iscsi:// URL
    serial: str = ""
    changer: str | None = None
    drive_number: int | None = None
    enabled: bool = True


class DeviceLookup(Protocol):
    """Registered devices, by name."""

    def get(self, name: str) -> DeviceInfo:
        """The device named ``name``; KeyError naming the registered ones otherwise."""

    def drives_of(self, changer: str) -> list[DeviceInfo]:
        """The drives registered in ``changer``, by drive number; KeyError if no such changer."""
