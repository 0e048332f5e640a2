"""The catalog behind the plugin API's VolumeRegistry and DeviceLookup.

Media plugins (the tape library) keep their volume rows here. This module is the
only writer of volume rows: it checks every field, keeps one cartridge per label
and one label per cartridge, and writes every change to the audit log, so an
operator can tell later who (which plugin, on whose command) moved or recycled a
tape.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Callable
from dataclasses import fields
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..catalog.database import Catalog
from ..catalog.lookup import id_by_name
from ..catalog.models import AuditEvent, Device, Pool, Volume, utcnow
from ..plugin_api.media import VOLUME_STATES, DeviceInfo, VolumeInfo

#: Records one audit event: (action, target, **details).
AuditFn = Callable[..., None]

_LOCATION = re.compile(r"^(?:(?:slot|drive|mail) \d{1,6}|offline|vault: \S.{0,190})$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: A volume in these states holds data of its pool's media set: it never changes pool.
_BOUND_STATES = ("writable", "full")
#: VolumeInfo fields stored as they are (everything except label, pool, id, created_at).
_COLUMNS = tuple(
    f.name for f in fields(VolumeInfo) if f.name not in ("label", "pool", "id", "created_at")
)


def _volume_info(row: Volume, pool_name: str | None) -> VolumeInfo:
    values = {name: getattr(row, name) for name in _COLUMNS}
    return VolumeInfo(
        label=row.label, pool=pool_name, id=row.id, created_at=row.created_at, **values
    )


def _check_text(what: str, value: object, limit: int, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise ValueError(f"volume {what} must be text, not {type(value).__name__}")
    if len(value) > limit:
        raise ValueError(f"volume {what} is longer than {limit} characters")


def _check_count(what: str, value: object, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"volume {what} must be a whole number >= 0, not {value!r}")


def _check_time(what: str, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError(f"volume {what} must be a time-zone aware datetime, not {value!r}")


def validate_label(label: object) -> str:
    """A barcode label: 1 to 200 printable characters, no surrounding white space."""
    if not isinstance(label, str) or not label or len(label) > 200:
        raise ValueError(f"a volume label is 1 to 200 characters, not {label!r}")
    if label != label.strip() or _CONTROL.search(label):
        raise ValueError(f"volume label {label!r} has white space around it or control characters")
    return label


def validate_volume(info: VolumeInfo) -> None:
    """Refuse a VolumeInfo whose fields are out of range (ValueError, naming the field)."""
    validate_label(info.label)
    _check_text("pool", info.pool, 200, optional=True)
    if info.state not in VOLUME_STATES:
        raise ValueError(
            f"unknown volume state {info.state!r} (choose from {', '.join(VOLUME_STATES)})"
        )
    _check_text("location", info.location, 200)
    if info.location and not _LOCATION.match(info.location):
        raise ValueError(
            f"volume location {info.location!r} is not one of 'slot N', 'drive N', "
            "'mail N', 'offline', 'vault: NOTE' (or empty when unknown)"
        )
    _check_text("uuid", info.uuid, 64, optional=True)
    _check_text("media set", info.media_set, 64, optional=True)
    _check_count("media set sequence number", info.media_set_seq, optional=True)
    if info.media_set_seq is not None and info.media_set is None:
        raise ValueError("a media set sequence number needs a media set")
    for name in ("bytes_used", "cleaning_uses", "error_count"):
        _check_count(name.replace("_", " "), getattr(info, name))
    _check_count("bytes total", info.bytes_total, optional=True)
    for name in ("worm", "cleaning", "labeled"):
        if not isinstance(getattr(info, name), bool):
            raise ValueError(f"volume {name} must be True or False")
    if info.state == "cleaning" and not info.cleaning:
        raise ValueError("only a cleaning cartridge (cleaning=True) has the state 'cleaning'")
    _check_time("expiry time", info.expires_at)
    _check_time("last written time", info.last_written_at)
    _check_text("media type", info.media_type, 50)
    _check_text("note", info.note, 10_000)


def _jsonable(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else value


def _write_audit_event(catalog: Catalog, actor: str) -> AuditFn:
    """An audit function for engine contexts built without an Appliance (tools, tests)."""

    def audit(action: str, target: str = "", **details: Any) -> None:
        with catalog.session() as s:
            s.add(
                AuditEvent(at=utcnow(), actor=actor, action=action, target=target, details=details)
            )

    return audit


class CatalogVolumeRegistry:
    """The :class:`~tapir.appliance.plugin_api.VolumeRegistry` over the catalog."""

    def __init__(self, catalog: Catalog, audit: AuditFn | None, plugin: str) -> None:
        self.catalog = catalog
        self.plugin = plugin
        self._audit = audit or _write_audit_event(catalog, f"plugin:{plugin}")

    def list(
        self,
        pool: str | None = None,
        state: str | None = None,
        media_set: str | None = None,
    ) -> builtins.list[VolumeInfo]:
        """Volumes matching every given filter, by media set, sequence number and label."""
        if state is not None and state not in VOLUME_STATES:
            raise ValueError(
                f"unknown volume state {state!r} (choose from {', '.join(VOLUME_STATES)})"
            )
        with self.catalog.session() as s:
            q = select(Volume, Pool.name).outerjoin(Pool, Volume.pool_id == Pool.id)
            if pool is not None:
                q = q.where(Volume.pool_id == _pool_id(s, pool))
            if state is not None:
                q = q.where(Volume.state == state)
            if media_set is not None:
                q = q.where(Volume.media_set == media_set)
            found = [_volume_info(row, name) for row, name in s.execute(q).all()]
        # Sorted here: SQLite and PostgreSQL order NULLs differently.
        return sorted(
            found,
            key=lambda v: (
                v.media_set or "",
                -1 if v.media_set_seq is None else v.media_set_seq,
                v.label,
            ),
        )

    def get(self, label: str) -> VolumeInfo | None:
        """The volume labelled ``label``, or None."""
        with self.catalog.session() as s:
            found = s.execute(
                select(Volume, Pool.name)
                .outerjoin(Pool, Volume.pool_id == Pool.id)
                .where(Volume.label == label)
            ).first()
        return None if found is None else _volume_info(found[0], found[1])

    def save(self, info: VolumeInfo) -> VolumeInfo:
        """Insert or update the volume by label; see the protocol for what is refused."""
        if not isinstance(info, VolumeInfo):
            raise TypeError(f"save() takes a VolumeInfo, not {type(info).__name__}")
        validate_volume(info)
        try:
            with self.catalog.session() as s:
                pool_id = _pool_id(s, info.pool) if info.pool is not None else None
                row = s.scalar(select(Volume).where(Volume.label == info.label))
                before = None if row is None else _volume_info(row, _pool_name(s, row.pool_id))
                self._check_identity(s, info, row)
                if row is None:
                    row = Volume(label=info.label, created_at=utcnow())
                    s.add(row)
                elif row.pool_id != pool_id and row.state in _BOUND_STATES:
                    raise ValueError(
                        f"volume {info.label} is {row.state} in pool {_pool_name(s, row.pool_id)}: "
                        "its data belongs to that pool's media set; expire or retire it first"
                    )
                row.pool_id = pool_id
                for name in _COLUMNS:
                    setattr(row, name, getattr(info, name))
                s.flush()
                saved = _volume_info(row, info.pool)
        except IntegrityError as exc:
            # Two writers saving a new label at once: the unique label decides.
            raise ValueError(
                f"a volume labelled {info.label!r} already exists: {exc.orig}"
            ) from None
        changes = _differences(before, saved)
        if changes:
            action = "volume.create" if before is None else "volume.update"
            self._audit(action, info.label, plugin=self.plugin, changes=changes)
        return saved

    def delete(self, label: str) -> None:
        """Remove the volume's row (nothing on the medium changes); KeyError if unknown."""
        with self.catalog.session() as s:
            row = s.scalar(select(Volume).where(Volume.label == label))
            if row is None:
                raise KeyError(f"no volume labelled {label!r}")
            gone = _volume_info(row, _pool_name(s, row.pool_id))
            s.delete(row)
        self._audit(
            "volume.delete",
            label,
            plugin=self.plugin,
            pool=gone.pool,
            state=gone.state,
            uuid=gone.uuid,
            media_set=gone.media_set,
        )

    @staticmethod
    def _check_identity(s: Session, info: VolumeInfo, row: Volume | None) -> None:
        if row is not None and row.uuid and info.uuid and row.uuid != info.uuid:
            raise ValueError(
                f"duplicate label {info.label!r}: it names the cartridge {row.uuid}, "
                f"not {info.uuid} (two cartridges with one barcode?)"
            )
        if info.uuid:
            other = s.scalar(
                select(Volume.label).where(Volume.uuid == info.uuid, Volume.label != info.label)
            )
            if other is not None:
                raise ValueError(
                    f"cartridge {info.uuid} is already recorded as volume {other!r}, "
                    f"not {info.label!r}"
                )


def _pool_id(s: Session, name: str) -> int:
    return id_by_name(s, Pool, name, "pool")


def _pool_name(s: Session, pool_id: int | None) -> str | None:
    return None if pool_id is None else s.scalar(select(Pool.name).where(Pool.id == pool_id))


def _differences(before: VolumeInfo | None, after: VolumeInfo) -> dict[str, Any]:
    names = ("pool", *_COLUMNS)
    if before is None:
        return {name: _jsonable(getattr(after, name)) for name in names}
    return {
        name: [_jsonable(getattr(before, name)), _jsonable(getattr(after, name))]
        for name in names
        if getattr(before, name) != getattr(after, name)
    }


class CatalogDeviceLookup:
    """The :class:`~tapir.appliance.plugin_api.DeviceLookup` over the catalog."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def get(self, name: str) -> DeviceInfo:
        """The device named ``name``; KeyError naming the registered ones otherwise."""
        with self.catalog.session() as s:
            row = s.scalar(select(Device).where(Device.name == name))
            if row is None:
                known = sorted(s.scalars(select(Device.name)))
                raise KeyError(
                    f"no device named {name!r} (registered: {', '.join(known) or 'none'})"
                )
            return self._info(s, row)

    def drives_of(self, changer: str) -> builtins.list[DeviceInfo]:
        """The drives registered in ``changer``, by drive number; KeyError if no such changer."""
        with self.catalog.session() as s:
            row = s.scalar(select(Device).where(Device.name == changer))
            if row is None or row.kind != "changer":
                raise KeyError(f"no changer named {changer!r}")
            drives = s.scalars(
                select(Device)
                .where(Device.changer_id == row.id)
                .order_by(Device.drive_number, Device.name)
            )
            return [self._info(s, d, changer) for d in drives]

    @staticmethod
    def _info(s: Session, row: Device, changer: str | None = None) -> DeviceInfo:
        if changer is None and row.changer_id is not None:
            changer = s.scalar(select(Device.name).where(Device.id == row.changer_id))
        return DeviceInfo(
            name=row.name,
            kind=row.kind,
            address=row.address,
            serial=row.serial,
            changer=changer,
            drive_number=row.drive_number,
            enabled=bool(row.enabled),
        )
