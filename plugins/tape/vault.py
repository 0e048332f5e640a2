"""Off-site vaulting: exporting media sets through the mail slots, importing them back.

An exported media set is sealed first (no backup appends to a set that is
leaving), then its cartridges go to the free mail slots in sequence order; a
cartridge in use by a job is left alone and reported, as are those for which no
mail slot was free. Exported volumes are marked ``offline`` or ``vault: NOTE``.
The vault report lists the cartridges out of the library, what they hold (media
set, recovery points by asset and date) and when they expire.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tapir.appliance.plugin_api import PluginContext, TapirError, VolumeInfo
from tapir.hardware.elements import ElementKind
from tapir.hardware.errors import HardwareError

from .inventory import InventoryReport, registry, sync_inventory
from .keyprint import REPOSITORY_CONFIG, key_fingerprint
from .lifecycle import expiry_time
from .poolindex import open_index, pool_settings
from .reservation import LockBusy, hold

PointsFn = Callable[[], list[dict[str, Any]]]


@dataclass
class ExportReport:
    """Which cartridges of a media set went to which mail slot, and which stayed."""

    pool: str
    media_set: str
    exported: list[tuple[str, int]] = field(default_factory=list)  # barcode, mail slot
    remaining: list[tuple[str, str]] = field(default_factory=list)  # barcode, why
    sealed: bool = False

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "pool": self.pool,
            "media_set": self.media_set,
            "sealed": self.sealed,
            "exported": [{"barcode": b, "mail_slot": m} for b, m in self.exported],
            "remaining": [{"barcode": b, "reason": r} for b, r in self.remaining],
        }

    def lines(self) -> list[str]:
        """The report for an operator."""
        out = [f"pool {self.pool}, media set {self.media_set}:"]
        out += [f"  {b} -> mail slot {m}" for b, m in self.exported]
        out += [f"  {b} remains: {why}" for b, why in self.remaining]
        if self.remaining:
            out.append(
                "empty the mail slots and run the same export again for the remaining cartridges"
            )
        return out


@dataclass
class ImportReport:
    """Cartridges taken in from the mail slots, and the inventory that followed."""

    imported: list[tuple[str, int]] = field(default_factory=list)  # barcode, storage slot
    failed: list[tuple[str, str]] = field(default_factory=list)  # mail slot text, why
    inventory: InventoryReport | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "imported": [{"barcode": b, "slot": s} for b, s in self.imported],
            "failed": [{"from": f, "reason": r} for f, r in self.failed],
            "inventory": self.inventory.as_dict() if self.inventory else None,
        }

    def lines(self) -> list[str]:
        """The report for an operator."""
        out = [f"{b} -> slot {s}" for b, s in self.imported]
        out += [f"{where}: not imported: {why}" for where, why in self.failed]
        if not self.imported and not self.failed:
            out.append("the mail slots are empty")
        return out


@dataclass
class VaultEntry:
    """One cartridge out of the library and what it holds."""

    barcode: str
    pool: str | None
    location: str
    media_set: str | None
    media_set_seq: int | None
    expires_at: datetime | None
    expiry_rule: str
    recovery_points: list[dict[str, Any]] = field(default_factory=list)
    #: The pool key fingerprint (None: not encrypted, or no media set): which
    #: exported key file opens this cartridge.
    key_fingerprint: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dataclasses.asdict(self)


def is_out(volume: VolumeInfo) -> bool:
    """The cartridge is out of the library (offline or in a vault)."""
    return volume.location == "offline" or volume.location.startswith("vault:")


def vault_location(note: str) -> str:
    """``vault: NOTE``, or ``offline`` without a note."""
    note = " ".join(note.split())
    return f"vault: {note}" if note else "offline"


def export_media_set(
    ctx: PluginContext,
    pool: str,
    changer: str,
    *,
    media_set: str | None = None,
    current: bool = False,
    note: str = "",
) -> ExportReport:
    """Send media set ``media_set`` (or the pool's newest, ``current``) to the mail slots."""
    from .library import Library

    pool_settings(ctx, pool)
    volumes = registry(ctx)
    location = vault_location(note)
    index = open_index(ctx, pool)
    try:
        live = [m for m in index.media_sets() if not m.expired]
        if current:
            if not live:
                raise TapirError(f"pool {pool} has no media set to export")
            chosen = live[-1]
        else:
            chosen = next((m for m in live if m.uuid == media_set), None)
            if chosen is None:
                known = ", ".join(m.uuid for m in live) or "none"
                raise KeyError(f"pool {pool} has no media set {media_set} (media sets: {known})")
        members = volumes.list(pool=pool, media_set=chosen.uuid)
        if not members:
            raise TapirError(f"media set {chosen.uuid} of pool {pool} has no volumes")
        report = ExportReport(pool=pool, media_set=chosen.uuid)
        if not chosen.sealed:
            # A set leaving the library takes no more backups: the next one starts a new set.
            index.seal_media_set(chosen.uuid)
            report.sealed = True
    finally:
        index.close()
    for row in members:
        if row.state == "writable":
            volumes.save(dataclasses.replace(row, state="full"))
    library = Library(ctx, changer)
    try:
        for row in members:
            why = _export_one(ctx, library, row.label, location, report)
            if why:
                report.remaining.append((row.label, why))
    finally:
        library.close()
    return report


def _export_one(
    ctx: PluginContext, library: Any, barcode: str, location: str, report: ExportReport
) -> str | None:
    volumes = registry(ctx)
    try:
        lock = hold(ctx, "volume", barcode, purpose="export", wait=False)
    except LockBusy:
        return "in use by a job"
    try:
        inventory = library.inventory()
        element = inventory.find(barcode)
        if element is None:
            row = volumes.get(barcode)
            return f"not in the library ({row.location if row else 'unknown'})"
        if element.kind == ElementKind.MAIL:
            mail = element.number
        else:
            if element.kind == ElementKind.DRIVE:
                why = _unload(ctx, library, element.number)
                if why:
                    return why
                inventory = library.inventory()
                element = inventory.find(barcode)
                if element is None or element.kind != ElementKind.SLOT:
                    return "could not be unloaded from its drive"
            free = inventory.first_empty(ElementKind.MAIL)
            if free is None:
                return "no free mail slot"
            robot = hold(ctx, "changer", library.name, purpose=f"export {barcode}")
            try:
                mail = library.changer().export(element.number, free.number)
            except HardwareError as exc:
                return f"the library refused: {exc}"
            finally:
                robot.release()
        row = volumes.get(barcode)
        if row is not None:
            volumes.save(dataclasses.replace(row, location=location))
        report.exported.append((barcode, mail))
        ctx.logger.info("exported %s to mail slot %d (%s)", barcode, mail, location)
        return None
    finally:
        lock.release()


def _unload(ctx: PluginContext, library: Any, number: int) -> str | None:
    from .reservation import DriveBusy, reserve_drive

    assert ctx.devices is not None
    device = next(
        (d for d in ctx.devices.drives_of(library.name) if d.drive_number == number), None
    )
    if device is None:
        return f"it is in drive {number}, which is not registered"
    try:
        with reserve_drive(ctx, [device], purpose="export", wait=False):
            library.unmount(device)
    except DriveBusy:
        return f"it is in drive {device.name}, which a job is using"
    return None


def import_cartridges(ctx: PluginContext, changer: str) -> ImportReport:
    """Move every cartridge in a mail slot into a free storage slot, then take inventory."""
    from .library import Library

    report = ImportReport()
    library = Library(ctx, changer)
    try:
        robot = hold(ctx, "changer", changer, purpose="import")
        try:
            for element in library.inventory().mail_slots:
                if not element.full:
                    continue
                barcode = element.barcode or f"(no barcode, {element.name})"
                try:
                    slot = library.changer().import_(element.number)
                except HardwareError as exc:
                    report.failed.append((element.name, str(exc)))
                    continue
                report.imported.append((barcode, slot))
        finally:
            robot.release()
        report.inventory = sync_inventory(ctx, changer, library.inventory())
    finally:
        library.close()
    return report


def vault_report(
    ctx: PluginContext, *, pool: str | None = None, recovery_points: PointsFn
) -> list[VaultEntry]:
    """Every cartridge out of the library (of ``pool``): its media set, points and expiry."""
    volumes = registry(ctx)
    if pool is not None:
        pool_settings(ctx, pool)
    out = [v for v in volumes.list(pool=pool) if is_out(v) and not v.cleaning]
    if not out:
        return []
    by_id = {p["id"]: p for p in recovery_points()}
    entries = []
    contents: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for v in out:
        points: list[dict[str, Any]] = []
        fingerprint: str | None = None
        expires, rule = v.expires_at, "never (no retention)"
        if v.pool is not None and v.media_set is not None:
            settings = pool_settings(ctx, v.pool)
            key = (v.pool, v.media_set)
            if key not in contents:
                contents[key] = _points_on(ctx, v.pool, v.media_set, by_id)
            points = contents[key]
            members = volumes.list(pool=v.pool, media_set=v.media_set)
            index = open_index(ctx, v.pool)
            try:
                row = next((m for m in index.media_sets() if m.uuid == v.media_set), None)
                # A pool's keys never change (an import re-wraps the same keys), so the
                # pool's config names the key of every one of its media sets.
                try:
                    fingerprint = key_fingerprint(index.get_config(REPOSITORY_CONFIG))
                except TapirError as exc:  # the report still lists the cartridge
                    fingerprint = f"unknown ({exc})"
            finally:
                index.close()
            if settings.retention_days is not None:
                rule = f"{settings.retention_days} day(s) after the set's last write"
                if row is not None and expires is None:
                    expires = expiry_time(row, members, settings.retention_days)
            elif settings.retention_sets is not None:
                rule = f"when {settings.retention_sets} newer media set(s) exist"
        elif v.media_set is None:
            rule = "holds no media set"
        entries.append(
            VaultEntry(
                barcode=v.label,
                pool=v.pool,
                location=v.location,
                media_set=v.media_set,
                media_set_seq=v.media_set_seq,
                expires_at=expires,
                expiry_rule=rule,
                recovery_points=points,
                key_fingerprint=fingerprint,
            )
        )
    return entries


def _points_on(
    ctx: PluginContext, pool: str, media_set: str, by_id: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    index = open_index(ctx, pool)
    try:
        names = [
            n
            for n in index.manifest_names()
            if (where := index.manifest_location(n)) is not None and where.media_set == media_set
        ]
    finally:
        index.close()
    found = []
    for name in names:
        p = by_id.get(name, {})
        found.append(
            {
                "id": name,
                "asset": p.get("asset", "(not in the catalog)"),
                "job": p.get("job"),
                "created_at": p.get("created_at"),
                "level": p.get("level"),
            }
        )
    return sorted(found, key=lambda p: (str(p["asset"]), str(p["created_at"] or "")))
