"""Freeze and thaw: FLUSH TABLES WITH READ LOCK held on a session until thaw, bounded.

While frozen, no table changes and no transaction commits, so a snapshot (a VM's,
a storage volume's, or every member of a consistency group) sees one state. The
binary log position read under the lock names that state exactly; it is kept
and a backup taken while frozen records it (``frozen_at``), so the point can be
restored to the group's moment by ``stop_position``.

The lock stops every writer, so it is bounded: a watchdog releases it after the
endpoint's ``freeze_timeout`` seconds even when thaw never comes; thaw then
reports that the freeze ran out, because the snapshot may have missed it.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field

import pymysql

from tapir.appliance.plugin_api import PluginError

from .client import connect, query
from .options import ConnectionSettings


@dataclass
class Frozen:
    """One held lock."""

    conn: pymysql.connections.Connection
    timeout: int
    position: dict[str, object]
    timer: threading.Timer | None = None
    expired: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class FreezeRegistry:
    """The freezes this plugin holds, by asset external id."""

    def __init__(self) -> None:
        self._held: dict[str, Frozen] = {}
        self._lock = threading.Lock()

    def freeze(self, key: str, settings: ConnectionSettings) -> dict[str, object]:
        """Take the lock for ``key``; returns the binlog position it holds the server at."""
        with self._lock:
            if key in self._held:
                raise PluginError(f"{key} is already frozen")
        conn = connect(settings)
        try:
            # FTWRL waits for running statements; lock_wait_timeout bounds that wait too.
            query(conn, f"SET SESSION lock_wait_timeout = {int(settings.freeze_timeout)}")
            try:
                query(conn, "FLUSH TABLES WITH READ LOCK")
            except PluginError as exc:
                raise PluginError(
                    f"could not freeze {settings.where} within {settings.freeze_timeout} s: {exc}"
                ) from None
            position = read_position(conn)
        except BaseException:
            conn.close()
            raise
        frozen = Frozen(conn, settings.freeze_timeout, position)
        frozen.timer = threading.Timer(settings.freeze_timeout, self._expire, args=(frozen,))
        frozen.timer.daemon = True
        with self._lock:
            self._held[key] = frozen
        frozen.timer.start()
        return position

    def position(self, key: str) -> dict[str, object] | None:
        """The binlog position of a freeze still held, or None."""
        with self._lock:
            frozen = self._held.get(key)
        if frozen is None or frozen.expired:
            return None
        return dict(frozen.position)

    def thaw(self, key: str) -> None:
        """Release the lock; PluginError if it ran out before (or the server dropped it)."""
        with self._lock:
            frozen = self._held.pop(key, None)
        if frozen is None:
            return
        if frozen.timer is not None:
            frozen.timer.cancel()
        with frozen.lock:
            expired = frozen.expired
            frozen.expired = True
            try:
                if not expired:
                    query(frozen.conn, "UNLOCK TABLES")
            except PluginError as exc:
                raise PluginError(
                    f"the freeze of {key} was lost before thaw (the server dropped the session): "
                    f"{exc}; a snapshot taken meanwhile may be inconsistent"
                ) from None
            finally:
                _close(frozen.conn)
        if expired:
            raise PluginError(
                f"the freeze of {key} ran out after {frozen.timeout} s (freeze_timeout) and was "
                "released before thaw; a snapshot taken after that may be inconsistent"
            )

    def _expire(self, frozen: Frozen) -> None:
        with frozen.lock:
            if frozen.expired:
                return
            frozen.expired = True
            _close(frozen.conn)  # closing the session releases its global read lock


def read_position(conn: pymysql.connections.Connection) -> dict[str, object]:
    """The binlog file, position and GTID the server stands at ({} without binlog)."""
    rows = query(conn, "SHOW MASTER STATUS")
    if not rows:
        return {}
    gtid = query(conn, "SELECT @@gtid_binlog_pos")[0][0]
    return {"file": str(rows[0][0]), "position": int(rows[0][1]), "gtid": str(gtid or "")}


def _close(conn: pymysql.connections.Connection) -> None:
    with contextlib.suppress(Exception):  # already gone
        conn.close()


def mark_of(freezes: FreezeRegistry, key: str, name: str) -> dict[str, object]:
    """A consistency group's mark of a frozen server: its binlog file and position.

    Read when the lock was taken, so no transaction committed between the mark and
    the freeze; PluginError when the server is not frozen or has no binary log
    (without one no restore can stop at the group's moment).
    """
    position = freezes.position(key)
    if position is None:
        raise PluginError(f"{name} is not frozen (or its freeze ran out): no mark to take")
    if not position:
        raise PluginError(
            f"{name} has binary logging off: a consistency group needs log_bin to restore "
            "the server to the group's moment"
        )
    return {"binlog": position["file"], "position": position["position"], "gtid": position["gtid"]}


def restore_options_for(mark: dict[str, object]) -> dict[str, object]:
    """``stop_position`` = the mark's FILE:POS, or {} for a mark without a position."""
    if not mark.get("binlog") or mark.get("position") is None:
        return {}
    return {"stop_position": f"{mark['binlog']}:{mark['position']}"}
