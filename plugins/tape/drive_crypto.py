"""Hardware (drive) encryption of a tape pool: the pool option ``drive_encryption``.

``off`` (the default) never talks to the drive about encryption, except to read
a pool that holds a drive key (one imported to read a rebuilt pool's tapes). ``auto`` asks
each drive whether it encrypts with AES-256-GCM under a key sent by the host
(SECURITY PROTOCOL IN, tape data encryption protocol 20h: the In Support page
and the Data Encryption Capabilities page) and, where it does, sends the pool's
drive key after a cartridge is loaded (SECURITY PROTOCOL OUT, Set Data
Encryption page) and clears it before the cartridge is unloaded; a drive that
cannot is logged once per session and used without. ``required`` refuses to
write or read through such a drive before anything is loaded.

Labels are recorded in clear, as LTO practice and Proxmox Backup Server have
it: the media label (tape file 0) and the media-set label (file 1) are written
with encryption switched off for their writes (:func:`labels_in_clear`), so any
drive identifies any cartridge (``tapir tape label``, mounting, the catalog
rebuild) without a key. Everything after them (archives, catalogs) is written
under the key; reading it needs the key loaded first, and the key is sent with
MIXED decryption so that the clear labels read back through the same drive.

The drive key is a random 256-bit secret of the tape plugin (never a pool key
of the core, which a plugin never sees), sealed in the appliance's secret store
under ``tape.drive-key.<pool>``. It is created with the pool; ``tapir tape
drive-key export`` writes it out for disaster recovery.
"""

from __future__ import annotations

import hashlib
import secrets
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tapir.appliance.plugin_api import DeviceInfo, PluginContext, TapirError
from tapir.hardware import encryption
from tapir.hardware.drive import TapeDrive
from tapir.hardware.errors import CommandFailed, HardwareError
from tapir.hardware.sense import SenseKey
from tapir.hardware.transport import TransportError

MODES = ("off", "auto", "required")
KEY_BYTES = 32
SECRET_PREFIX = "tape.drive-key."


class DriveEncryptionUnavailable(TapirError):
    """``drive_encryption=required`` and the drive cannot encrypt: nothing was written."""


class DriveKeyMissing(TapirError):
    """The pool encrypts in the drive but its drive key is not in the secret store."""


#: The additional sense code of every tape data encryption error (SSC-4: 74h/xxh,
#: e.g. 74h/01h UNABLE TO DECRYPT DATA, 74h/03h INCORRECT DATA ENCRYPTION KEY).
_SECURITY_ASC = 0x74


def is_decryption_error(exc: BaseException) -> bool:
    """True when a drive refused to return a block because it cannot decrypt it."""
    sense = exc.sense if isinstance(exc, CommandFailed) else None
    return sense is not None and sense.key == SenseKey.DATA_PROTECT and sense.asc == _SECURITY_ASC


def missing_key_message(
    pool: str | None, barcode: str, exc: BaseException, *, key_loaded: bool = False
) -> str:
    """Why a cartridge's data did not read (its drive key is not loaded, or another key is),
    and what to do."""
    owner = f"pool {pool}" if pool else "its pool"
    if key_loaded:
        return (
            f"{barcode}: the drive key of {owner} does not decrypt its data ({exc}); was "
            f"the key replaced? import the key it was written with "
            f"(tapir tape drive-key import {pool or 'POOL'} FILE)"
        )
    return (
        f"{barcode}: the data after its labels is encrypted in the drive and the drive key "
        f"of {owner} is not loaded ({exc}); import the key "
        f"(tapir tape drive-key import {pool or 'POOL'} FILE) and try again"
    )


@dataclass(frozen=True)
class _Sent:
    key: bytes
    index: int


#: Drives (opened TapeDrive objects) that hold a pool's key now, with what was sent.
_holding: weakref.WeakKeyDictionary[Any, _Sent] = weakref.WeakKeyDictionary()


@contextmanager
def labels_in_clear(tape: Any) -> Iterator[None]:
    """Write a label with the drive's encryption off, then send the key back.

    A no-op for a drive that holds no key (never engaged, or not encryption-capable).
    When the key cannot be sent back the error is raised: nothing more is written
    in clear than the label.
    """
    sent = _holding.get(tape)
    if sent is None:
        yield
        return
    encryption.set_encryption(tape.transport, None)
    try:
        yield
    finally:
        encryption.set_encryption(tape.transport, sent.key, sent.index, read_mixed=True)


def secret_name(pool: str) -> str:
    """The secret store name of a pool's drive key."""
    return f"{SECRET_PREFIX}{pool}"


def fingerprint(key: bytes) -> str:
    """A short public identifier of a drive key, to tell keys apart without showing them."""
    return hashlib.sha256(b"tapir-drive-key-fingerprint\0" + key).hexdigest()[:16]


def load_drive_key(ctx: PluginContext, pool: str) -> bytes | None:
    """The pool's drive key, or None when it has none."""
    try:
        text = ctx.read_secret(secret_name(pool))
    except KeyError:
        return None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise TapirError(f"the drive key of pool {pool!r} in the secret store is not hex") from None
    if len(key) != KEY_BYTES:
        raise TapirError(f"the drive key of pool {pool!r} is {len(key)} bytes, not {KEY_BYTES}")
    return key


def store_drive_key(ctx: PluginContext, pool: str, key: bytes) -> None:
    """Seal ``key`` as the pool's drive key (replacing none: callers check first)."""
    if len(key) != KEY_BYTES:
        raise ValueError(f"a drive key is {KEY_BYTES} bytes, not {len(key)}")
    ctx.store_secret(secret_name(pool), key.hex())


def ensure_drive_key(ctx: PluginContext, pool: str, mode: str) -> bytes | None:
    """Create the pool's drive key if the pool encrypts in the drive and has none yet.

    An existing key (imported for disaster recovery) is kept as it is.
    """
    if mode == "off":
        return None
    key = load_drive_key(ctx, pool)
    if key is None:
        key = secrets.token_bytes(KEY_BYTES)
        store_drive_key(ctx, pool, key)
        ctx.logger.warning(
            "pool %s: created drive encryption key %s; export it now "
            "(tapir tape drive-key export %s --out FILE): tapes written with it "
            "cannot be read without it",
            pool,
            fingerprint(key),
            pool,
        )
    return key


def aes256_gcm(tape: TapeDrive) -> tuple[int | None, str]:
    """The algorithm index of AES-256-GCM on this drive, or None and why not."""
    try:
        pages = encryption.in_support(tape.transport)
        if encryption.DATA_ENCRYPTION_CAPABILITIES not in pages:
            return None, "the drive lists no data encryption capabilities page"
        algorithms = encryption.capabilities(tape.transport)
    except (HardwareError, TransportError, ValueError) as exc:
        return None, f"the drive refused the tape data encryption protocol ({exc})"
    for algorithm in algorithms:
        if algorithm.is_aes256_gcm:
            return algorithm.index, "AES-256-GCM"
    return None, "the drive offers no AES-256-GCM with a host-supplied key"


class DriveCrypto:
    """One session's use of drive encryption (a write session or a reader)."""

    def __init__(self, ctx: PluginContext, pool: str, mode: str, *, writing: bool) -> None:
        if mode not in MODES:
            raise TapirError(f"drive_encryption must be one of {', '.join(MODES)}, not {mode!r}")
        if mode == "off" and not writing and load_drive_key(ctx, pool) is not None:
            # A pool attached after a catalog rebuild has the option's default; a key
            # it holds says its tapes were written encrypted. MIXED reads clear ones too.
            mode = "auto"
        self.ctx = ctx
        self.pool = pool
        self.mode = mode
        self.writing = writing
        #: drive name -> AES-256-GCM algorithm index, or None when it cannot.
        self._drives: dict[str, int | None] = {}
        self._key: bytes | None = None
        #: drives (names) that hold the key now.
        self.engaged: set[str] = set()

    @property
    def enabled(self) -> bool:
        """The pool asks for drive encryption at all."""
        return self.mode != "off"

    def _learn(self, address: str, tape: TapeDrive) -> None:
        index, why = aes256_gcm(tape)
        self._drives[address] = index
        if index is None:
            # Once per session and drive: a reader remounts often.
            self.ctx.logger.warning(
                "pool %s: hardware encryption is not available on drive %s: %s",
                self.pool,
                address,
                why,
            )
        else:
            self.ctx.logger.info(
                "pool %s: drive %s encrypts with AES-256-GCM (algorithm index %d)",
                self.pool,
                address,
                index,
            )

    def _require(self, address: str) -> int | None:
        index = self._drives[address]
        if index is None and self.mode == "required":
            if self.writing:
                raise DriveEncryptionUnavailable(
                    f"pool {self.pool} requires drive encryption (drive_encryption=required) "
                    f"but drive {address} cannot encrypt with AES-256-GCM; nothing was written"
                )
            # Its tapes were written encrypted: this drive would only return errors.
            raise DriveEncryptionUnavailable(
                f"pool {self.pool} requires drive encryption (drive_encryption=required) "
                f"but drive {address} cannot decrypt AES-256-GCM; nothing was read "
                "(use a drive of the pool that can)"
            )
        return index

    def check(self, drive: DeviceInfo) -> None:
        """Ask the reserved drive (no cartridge needed) before anything is loaded.

        Raises DriveEncryptionUnavailable for ``required`` (writing and reading).
        """
        if not self.enabled:
            return
        if drive.name not in self._drives:
            with TapeDrive.open(drive.address, block_size=0) as tape:
                self._learn(drive.name, tape)
        self._require(drive.name)

    def engage(self, tape: TapeDrive, drive: DeviceInfo) -> bool:
        """After a load: send the pool's key if the drive can encrypt; True when sent."""
        if not self.enabled:
            return False
        address = drive.name
        if address not in self._drives:
            self._learn(address, tape)
        index = self._require(address)
        if index is None:
            return False
        if self._key is None:
            self._key = load_drive_key(self.ctx, self.pool)
            if self._key is None:
                raise DriveKeyMissing(
                    f"pool {self.pool} encrypts in the drive but its drive key is missing; "
                    f"import it (tapir tape drive-key import {self.pool} FILE)"
                )
        # MIXED decryption: an ``auto`` pool's volume may hold blocks a drive
        # without encryption wrote, and they must read back too.
        try:
            encryption.set_encryption(tape.transport, self._key, index, read_mixed=True)
        except (HardwareError, TransportError) as exc:
            self._drives[address] = None
            self.ctx.logger.warning(
                "pool %s: drive %s refused the encryption key: %s", self.pool, address, exc
            )
            self._require(address)
            return False
        self.engaged.add(address)
        _holding[tape] = _Sent(self._key, index)
        return True

    def release(self, tape: TapeDrive, drive: DeviceInfo) -> None:
        """Before an unload: clear the key from the drive (never raises; logs)."""
        address = drive.name
        if address not in self.engaged:
            return
        _holding.pop(tape, None)
        try:
            encryption.set_encryption(tape.transport, None)
            self.engaged.discard(address)
        except (HardwareError, TransportError) as exc:
            self.ctx.logger.error(
                "pool %s: could not clear the encryption key from drive %s: %s "
                "(it clears on the next reservation loss or power cycle)",
                self.pool,
                address,
                exc,
            )
