"""Media labels and media-set labels on tape, and the check made before any write.

Tape file 0 of every Tapir volume is its media label (barcode, cartridge UUID,
pool, block size); file 1 is the media-set label once the volume joins a set.
Both are always written in clear, also on a drive-encrypted pool (see
:mod:`.drive_crypto`).
Before anything is written, the label read from the tape is compared with the
barcode and the catalog's record of the volume (``check_writable``): a tape
that is not scratch, or expired/recyclable, of this pool is never overwritten.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from tapir.appliance.plugin_api import TapirError, VolumeInfo
from tapir.hardware.errors import EndOfData

from .blockio import DriveLike, EmptyFile, TapeFileReader, TapeFileWriter, locate
from .drive_crypto import labels_in_clear
from .format import (
    DEFAULT_BLOCK_SIZE,
    MediaLabel,
    MediaSetLabel,
    TapeFormatError,
    new_uuid,
    utc_now,
)

#: Volume states a write may start on (anything else is refused).
WRITABLE_STATES = ("scratch", "writable", "expired", "recyclable")
#: States whose data has expired: the volume may be relabelled and overwritten.
RECYCLABLE_STATES = ("expired", "recyclable")


class ForeignTape(TapirError):
    """The tape holds data that is not a Tapir media label: never overwritten implicitly."""


class WriteRefused(TapirError):
    """The label on the tape and the catalog forbid writing this volume."""


def read_media_label(drive: DriveLike, block_size: int = DEFAULT_BLOCK_SIZE) -> MediaLabel | None:
    """Rewind and read tape file 0: the media label, or None for a blank tape.

    Raises ForeignTape when file 0 is anything but a Tapir media label (another
    program's data, a damaged label): such a tape is never treated as blank.
    """
    drive.rewind()
    try:
        reader = TapeFileReader(drive, block_size)
    except EndOfData:
        return None
    except EmptyFile:
        raise ForeignTape("the tape starts with a filemark: not a Tapir media label") from None
    except TapeFormatError as exc:
        raise ForeignTape(f"the tape does not start with a Tapir media label ({exc})") from None
    header = reader.header
    if not isinstance(header, MediaLabel):
        raise ForeignTape(f"tape file 0 is a {header.kind}, not a media label")
    return header


def read_media_set_label(
    drive: DriveLike, block_size: int = DEFAULT_BLOCK_SIZE
) -> MediaSetLabel | None:
    """Tape file 1: the media-set label, or None when the volume joined no set yet."""
    try:
        locate(drive, 1, block_size)
        reader = TapeFileReader(drive, block_size)
    except EndOfData:
        return None
    except TapeFormatError as exc:
        raise ForeignTape(f"tape file 1 is not a Tapir media-set label ({exc})") from None
    header = reader.header
    if not isinstance(header, MediaSetLabel):
        raise ForeignTape(f"tape file 1 is a {header.kind}, not a media-set label")
    return header


def write_media_label(
    drive: DriveLike, volume: VolumeInfo, pool: str | None, block_size: int = DEFAULT_BLOCK_SIZE
) -> VolumeInfo:
    """Rewind and write the media label; returns the volume with its uuid and ``labeled``.

    Everything on the tape after the label is lost (writing at BOT ends the
    recorded data there). A volume that already has a uuid keeps it: the
    cartridge stays the same cartridge when it is relabelled. The caller
    saves the returned VolumeInfo and has made sure the tape may be written.
    """
    uuid = volume.uuid or new_uuid()
    label = MediaLabel(None, None, volume.label, uuid, pool, utc_now(), block_size)
    drive.rewind()
    with labels_in_clear(drive):  # any drive identifies the cartridge, key or not
        TapeFileWriter(drive, label, block_size).close()
    return dataclasses.replace(
        volume,
        uuid=uuid,
        labeled=True,
        media_set=None,
        media_set_seq=None,
        bytes_used=block_size,
        last_written_at=datetime.now(UTC),
    )


def write_media_set_label(
    drive: DriveLike,
    label: MediaLabel,
    *,
    pool: str,
    media_set: str,
    seq: int,
    set_created_at: str,
    block_size: int = DEFAULT_BLOCK_SIZE,
    key_fingerprint: str | None = None,
) -> MediaSetLabel:
    """Write tape file 1, the media-set label, after the media label ``label``.

    The tape is positioned at file 1 first; whatever followed the media label is
    lost, so the caller must have checked the volume is scratch or recyclable.
    """
    header = MediaSetLabel(
        media_set, seq, label.volume, pool, set_created_at, key_fingerprint, utc_now()
    )
    locate(drive, 1, block_size)
    with labels_in_clear(drive):  # the rebuild reads it before it knows the key
        TapeFileWriter(drive, header, block_size).close()
    return header


def check_writable(label_on_tape: MediaLabel | None, volume: VolumeInfo, pool: str) -> None:
    """Raise WriteRefused explaining why this tape must not be written for ``pool``.

    Refused: a cleaning, retired or error volume; a volume of another pool; a
    volume that is not scratch, writable, expired or recyclable; a label whose
    barcode differs from the cartridge's; a Tapir label the catalog does not know
    (or another cartridge's uuid); a blank tape the catalog says holds data; a
    WORM cartridge that would be overwritten.
    """
    name = volume.label
    if volume.cleaning or volume.state == "cleaning":
        raise WriteRefused(f"{name} is a cleaning cartridge")
    if volume.state not in WRITABLE_STATES:
        raise WriteRefused(
            f"{name} is {volume.state}: only scratch, writable, expired or recyclable "
            "volumes are written"
        )
    if volume.pool is not None and volume.pool != pool:
        raise WriteRefused(f"{name} belongs to pool {volume.pool!r}, not {pool!r}")
    if volume.worm and (volume.state in RECYCLABLE_STATES):
        raise WriteRefused(f"{name} is a WORM cartridge: its data is never overwritten")
    if label_on_tape is None:
        if volume.state == "writable":
            raise WriteRefused(
                f"{name}: the catalog says it holds data of media set {volume.media_set}, "
                "but the tape is blank (wrong or erased cartridge?)"
            )
        if volume.worm and volume.labeled:
            raise WriteRefused(f"{name} is a WORM cartridge the catalog says was labelled")
        return
    if label_on_tape.barcode != name:
        raise WriteRefused(
            f"the tape in the cartridge with barcode {name} is labelled "
            f"{label_on_tape.barcode!r}: barcode and media label differ"
        )
    if volume.uuid is None:
        raise WriteRefused(
            f"{name} carries a Tapir label (cartridge {label_on_tape.volume}, pool "
            f"{label_on_tape.pool!r}) unknown to this catalog; relabel it explicitly with "
            "'tapir tape label --force' if it may be overwritten"
        )
    if label_on_tape.volume != volume.uuid:
        raise WriteRefused(
            f"{name}: the tape's label names cartridge {label_on_tape.volume}, the catalog "
            f"{volume.uuid} (two cartridges with one barcode?)"
        )
    if (
        label_on_tape.pool is not None
        and label_on_tape.pool != pool
        and volume.state not in RECYCLABLE_STATES
    ):
        raise WriteRefused(f"{name} is labelled for pool {label_on_tape.pool!r}, not {pool!r}")
