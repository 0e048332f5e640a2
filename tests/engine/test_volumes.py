"""The volume registry and device look-up media plugins receive, on SQLite and
PostgreSQL: fields round-trip, filters, refusals that change nothing, audit events, and
a migration that fills the new columns of existing rows."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from tapir.appliance.catalog.database import Catalog
from tapir.appliance.catalog.migrate import upgrade
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_api import (
    DeviceInfo,
    DeviceLookup,
    PluginContext,
    VolumeInfo,
    VolumeRegistry,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _ctx(app: Appliance, plugin: str = "memdisk") -> PluginContext:
    return app.env.plugin_context(plugin)


def _registry(app: Appliance) -> VolumeRegistry:
    volumes = _ctx(app).volumes
    assert volumes is not None
    return volumes


def _volume_events(app: Appliance) -> list[tuple[str, str, dict]]:
    return [
        (e.action, e.target, e.details)
        for e in reversed(app.audit_events(500))
        if e.action.startswith("volume.")
    ]


def test_only_media_plugins_get_volumes_and_devices(app: Appliance) -> None:
    media = _ctx(app, "memdisk")
    assert media.volumes is not None and media.devices is not None
    source = _ctx(app, "fakefiles")
    assert source.volumes is None and source.devices is None


def test_volumes_round_trip_and_filter(app: Appliance, tmp_path: Path) -> None:
    app.create_pool("tapes", "memdisk", path=tmp_path / "tapes")
    reg = _registry(app)
    full = VolumeInfo(
        label="ABC001L8",
        pool="tapes",
        uuid="0b5e6c1c-8d3b-4a53-9d0c-1a2b3c4d5e6f",
        state="full",
        location="slot 4",
        media_set="set-1",
        media_set_seq=0,
        bytes_used=12_000_000_000_000,
        bytes_total=12_000_000_000_000,
        worm=True,
        expires_at=NOW + timedelta(days=365),
        last_written_at=NOW,
        labeled=True,
        media_type="LTO-8",
        error_count=2,
        note="first of the set",
    )
    stored = reg.save(full)
    assert stored.id is not None and stored.created_at is not None
    assert dataclasses.replace(stored, id=None, created_at=None) == full
    assert reg.get("ABC001L8") == stored
    assert reg.get("NOPE") is None

    second = reg.save(
        VolumeInfo(
            label="ABC002L8",
            pool="tapes",
            state="writable",
            location="drive 0",
            media_set="set-1",
            media_set_seq=1,
        )
    )
    scratch = reg.save(VolumeInfo(label="ABC003L8", pool="tapes", location="vault: shelf 3"))
    cleaner = reg.save(
        VolumeInfo(label="CLN001L1", state="cleaning", cleaning=True, cleaning_uses=7)
    )
    assert cleaner.pool is None

    assert [v.label for v in reg.list(pool="tapes", media_set="set-1")] == ["ABC001L8", "ABC002L8"]
    assert reg.list(state="scratch") == [scratch]
    assert reg.list(state="cleaning") == [cleaner]
    assert {v.label for v in reg.list()} == {"ABC001L8", "ABC002L8", "ABC003L8", "CLN001L1"}
    assert reg.list(pool="tapes", state="writable") == [second]

    # An update by label: the writable tape fills up.
    filled = reg.save(dataclasses.replace(second, state="full", bytes_used=5, location="slot 5"))
    assert filled.id == second.id and filled.state == "full"
    assert reg.get("ABC002L8") == filled

    reg.delete("ABC003L8")
    assert reg.get("ABC003L8") is None
    with pytest.raises(KeyError):
        reg.delete("ABC003L8")

    events = _volume_events(app)
    assert [(a, t) for a, t, _ in events] == [
        ("volume.create", "ABC001L8"),
        ("volume.create", "ABC002L8"),
        ("volume.create", "ABC003L8"),
        ("volume.create", "CLN001L1"),
        ("volume.update", "ABC002L8"),
        ("volume.delete", "ABC003L8"),
    ]
    assert events[0][2]["plugin"] == "memdisk"
    assert events[0][2]["changes"]["worm"] is True
    assert events[4][2]["changes"] == {
        "state": ["writable", "full"],
        "location": ["drive 0", "slot 5"],
        "bytes_used": [0, 5],
    }
    # Saving what is stored already changes nothing and is not an event.
    reg.save(filled)
    assert len(_volume_events(app)) == 6


def test_refused_changes_leave_everything_as_it_was(app: Appliance, tmp_path: Path) -> None:
    app.create_pool("tapes", "memdisk", path=tmp_path / "tapes")
    app.create_pool("other", "memdisk", path=tmp_path / "other")
    reg = _registry(app)
    tape = reg.save(
        VolumeInfo(
            label="AAA001",
            pool="tapes",
            uuid="uuid-1",
            state="full",
            media_set="s",
            media_set_seq=0,
        )
    )
    reg.save(VolumeInfo(label="AAA002", pool="tapes", uuid="uuid-2"))
    events = len(_volume_events(app))

    refusals: list[tuple[VolumeInfo, type[Exception], str]] = [
        (VolumeInfo(label="NEW1", pool="nowhere"), KeyError, "no pool named 'nowhere'"),
        (dataclasses.replace(tape, pool="nowhere"), KeyError, "no pool named"),
        # Another cartridge under a barcode already known: a duplicate label.
        (dataclasses.replace(tape, uuid="uuid-9"), ValueError, "duplicate label"),
        # The same cartridge under a second label.
        (VolumeInfo(label="AAA003", pool="tapes", uuid="uuid-1"), ValueError, "already recorded"),
        (dataclasses.replace(tape, pool="other"), ValueError, "belongs to that pool"),
        (dataclasses.replace(tape, state="lost"), ValueError, "unknown volume state"),
        (dataclasses.replace(tape, location="shelf"), ValueError, "location"),
        (dataclasses.replace(tape, location="slot x"), ValueError, "location"),
        (dataclasses.replace(tape, bytes_used=-1), ValueError, "bytes used"),
        (dataclasses.replace(tape, media_set=None), ValueError, "needs a media set"),
        (dataclasses.replace(tape, expires_at=datetime(2030, 1, 1)), ValueError, "aware"),
        (dataclasses.replace(tape, state="cleaning"), ValueError, "cleaning cartridge"),
        (VolumeInfo(label=""), ValueError, "1 to 200"),
        (VolumeInfo(label=" A1"), ValueError, "white space"),
        (VolumeInfo(label="A\n1"), ValueError, "control"),
        (VolumeInfo(label="X" * 201), ValueError, "1 to 200"),
        (VolumeInfo(label="A1", media_type="x" * 51), ValueError, "media type"),
    ]
    for info, error, message in refusals:
        with pytest.raises(error, match=message):
            reg.save(info)
    assert reg.get("AAA001") == tape
    assert {v.label for v in reg.list()} == {"AAA001", "AAA002"}
    assert len(_volume_events(app)) == events
    with pytest.raises(KeyError):
        reg.list(pool="nowhere")
    with pytest.raises(ValueError):
        reg.list(state="lost")

    # Once expired, a tape may move to another pool (the move is audited).
    expired = reg.save(dataclasses.replace(tape, state="expired"))
    moved = reg.save(
        dataclasses.replace(
            expired, pool="other", state="scratch", media_set=None, media_set_seq=None
        )
    )
    assert moved.pool == "other"
    action, target, details = _volume_events(app)[-1]
    assert (action, target) == ("volume.update", "AAA001")
    assert details["changes"]["pool"] == ["tapes", "other"]


def test_registry_changes_are_attributed_to_the_acting_user(app: Appliance, tmp_path: Path) -> None:
    reg = _registry(app)
    with app.acting_as("alice", "127.0.0.1"):
        reg.save(VolumeInfo(label="ZZZ001"))
    (event,) = [e for e in app.audit_events() if e.action == "volume.create"]
    assert (event.actor, event.remote_addr) == ("alice", "127.0.0.1")


def test_device_lookup(app: Appliance) -> None:
    app.register_device("lib1", "changer", "/dev/sg9", check=False)
    app.register_device(
        "lib1-d1", "drive", "/dev/sg11", changer="lib1", drive_number=1, check=False
    )
    app.register_device(
        "lib1-d0", "drive", "/dev/sg10", changer="lib1", drive_number=0, check=False
    )
    app.register_device("loose", "drive", "/dev/sg12", check=False)
    devices: DeviceLookup | None = _ctx(app).devices
    assert devices is not None
    assert devices.get("lib1") == DeviceInfo("lib1", "changer", "/dev/sg9")
    assert devices.get("lib1-d0") == DeviceInfo(
        "lib1-d0", "drive", "/dev/sg10", changer="lib1", drive_number=0
    )
    assert devices.get("loose").changer is None
    assert [d.name for d in devices.drives_of("lib1")] == ["lib1-d0", "lib1-d1"]
    with pytest.raises(KeyError, match="registered: lib1, lib1-d0, lib1-d1, loose"):
        devices.get("lib2")
    with pytest.raises(KeyError, match="no changer named 'loose'"):
        devices.drives_of("loose")


def test_migration_fills_the_new_columns_of_existing_volumes(catalog_url: str) -> None:
    cat = Catalog(catalog_url)
    try:
        upgrade(cat.engine, "0002")
        with cat.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO volumes (label, state, location, bytes_used, note, created_at) "
                    "VALUES ('OLD001', 'full', 'slot 1', 7, '', :now)"
                ),
                {"now": NOW},
            )
        cat.upgrade()
        from tapir.appliance.engine.volumes import CatalogVolumeRegistry

        reg = CatalogVolumeRegistry(cat, None, "tape")
        old = reg.get("OLD001")
        assert old is not None
        assert (old.state, old.location, old.bytes_used) == ("full", "slot 1", 7)
        assert (old.worm, old.cleaning, old.labeled) == (False, False, False)
        assert (old.cleaning_uses, old.error_count, old.media_type) == (0, 0, "")
        assert old.media_set is None and old.expires_at is None
        # Without an appliance, the registry still audits, in the plugin's name.
        reg.save(dataclasses.replace(old, error_count=1))
        with cat.session() as s:
            rows = s.execute(text("SELECT actor, action, target FROM audit_events")).all()
        assert [tuple(r) for r in rows] == [("plugin:tape", "volume.update", "OLD001")]
    finally:
        cat.dispose()
