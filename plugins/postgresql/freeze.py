"""Quiescing a cluster for a snapshot taken by someone else (a hypervisor, a group).

freeze: ``CHECKPOINT`` (little WAL to replay after a restore of the snapshot),
then ``pg_backup_start(label, fast => true)`` in a session that stays open: a
non-exclusive backup lives only as long as its session. thaw:
``pg_backup_stop(wait_for_archive => false)`` in that session, which ends backup
mode and returns the backup label the snapshot's copy of the data needs.
Writes go on while frozen; what freeze guarantees is that full-page writes are
on and the WAL from the backup start is kept, so the snapshot's crash image
recovers consistently.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import psycopg

from tapir.appliance.plugin_api import AssetInfo, PluginContext, PluginError

from .connection import open_connection
from .options import ConnectionSettings, settings_from


@dataclass
class Frozen:
    conn: psycopg.Connection
    start_lsn: str


def settings_of(asset: AssetInfo, ctx: PluginContext) -> ConnectionSettings:
    """Connection settings recorded in a cluster asset's metadata at discovery."""
    conn = asset.metadata.get("connection")
    if not isinstance(conn, dict):
        raise PluginError(f"{asset.name}: no connection recorded; discover the endpoint again")
    return settings_from(str(conn["endpoint"]), str(conn["address"]), dict(conn["options"]), ctx)


class FreezeSessions:
    """Open backup-mode sessions, one per frozen cluster."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frozen: dict[str, Frozen] = {}

    def freeze(self, asset: AssetInfo, ctx: PluginContext) -> str:
        """Enter backup mode on ``asset``'s cluster; returns the backup start LSN."""
        with self._lock:
            if asset.external_id in self._frozen:
                raise PluginError(f"{asset.name} is frozen already")
        settings = settings_of(asset, ctx)
        conn = open_connection(settings)
        try:
            conn.execute("CHECKPOINT")
            row = conn.execute(
                "SELECT pg_backup_start(%s, true)::text", (f"tapir freeze {asset.name}",)
            ).fetchone()
        except psycopg.Error as exc:
            conn.close()
            raise PluginError(f"{asset.name}: cannot enter backup mode: {exc}") from None
        assert row is not None
        with self._lock:
            self._frozen[asset.external_id] = Frozen(conn, str(row[0]))
        ctx.logger.info("%s frozen (backup mode from %s)", asset.name, row[0])
        return str(row[0])

    def thaw(self, asset: AssetInfo, ctx: PluginContext) -> dict[str, str] | None:
        """Leave backup mode; returns the stop LSN and backup label (None: was not frozen)."""
        with self._lock:
            frozen = self._frozen.pop(asset.external_id, None)
        if frozen is None:
            return None
        try:
            row = frozen.conn.execute(
                "SELECT lsn::text, labelfile FROM pg_backup_stop(false)"
            ).fetchone()
        except psycopg.Error as exc:
            raise PluginError(
                f"{asset.name}: leaving backup mode failed ({str(exc).strip()}); the session "
                "is gone, so the server left backup mode itself, but a snapshot taken while "
                "frozen lacks its backup label"
            ) from None
        finally:
            frozen.conn.close()
        assert row is not None
        ctx.logger.info(
            "%s thawed (backup stopped at %s); backup label: %s",
            asset.name,
            row[0],
            " | ".join(str(row[1]).strip().splitlines()),
        )
        return {"start_lsn": frozen.start_lsn, "stop_lsn": str(row[0]), "backup_label": row[1]}
