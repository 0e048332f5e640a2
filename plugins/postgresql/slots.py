"""The physical replication slot that makes the server keep WAL until Tapir has it."""

from __future__ import annotations

import psycopg

from tapir.appliance.plugin_api import PluginContext

from .wal import parse_lsn


def ensure_slot(conn: psycopg.Connection, slot: str, ctx: PluginContext) -> int | None:
    """Create the slot when missing (reserving WAL now); returns its restart LSN."""
    row = conn.execute(
        "SELECT slot_type, restart_lsn FROM pg_replication_slots WHERE slot_name = %s", (slot,)
    ).fetchone()
    if row is None:
        ctx.logger.warning("creating the replication slot %s: WAL is kept for Tapir from now", slot)
        row = conn.execute(
            "SELECT 'physical', lsn FROM pg_create_physical_replication_slot(%s, true)", (slot,)
        ).fetchone()
    assert row is not None
    if row[0] != "physical":
        raise ValueError(f"replication slot {slot!r} exists but is {row[0]}, not physical")
    return parse_lsn(str(row[1])) if row[1] is not None else None


def segment_size(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'")
    value = row.fetchone()
    assert value is not None
    return int(value[0])
