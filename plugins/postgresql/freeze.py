"""Quiescing a cluster for a snapshot taken by someone else (a hypervisor, a group).

freeze: ``CHECKPOINT`` (little WAL to replay after a restore of the snapshot),
then ``pg_backup_start(label, fast => true)`` in a session that stays open: a
non-exclusive backup lives only as long as its session. thaw:
``pg_backup_stop(wait_for_archive => false)`` in that session, which ends backup
mode and returns the backup label the snapshot's copy of the data needs.
Without freeze options writes go on while frozen; what freeze guarantees then is
that full-page writes are on and the WAL from the backup start is kept, so the
snapshot's crash image recovers consistently.

A cut consistent across servers (a consistency group) needs writes to stop
committing while frozen. PostgreSQL has no global write lock, so the endpoint
names what to hold (see docs/plugins/postgresql.md): ``freeze_lock``, an advisory
lock key that cooperating writers hold in shared mode around each distributed
transaction (freeze takes it exclusively: it waits for the transactions holding
it and blocks new ones), and ``freeze_tables``, tables locked IN SHARE MODE (no
row of them changes). Both are taken last, after the checkpoint, in a session of
their own in ``freeze_database``, and within ``freeze_timeout`` seconds
(``lock_timeout``), else freeze gives up and leaves nothing held.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import psycopg
from psycopg import sql

from tapir.appliance.plugin_api import AssetInfo, OptionSpec, PluginContext, PluginError

from .connection import open_connection
from .options import ConnectionSettings, settings_from

DEFAULT_FREEZE_TIMEOUT = 10

FREEZE_OPTIONS = [
    OptionSpec(
        "freeze_lock",
        "int",
        "advisory lock key that writers hold in shared mode around each (distributed) "
        "transaction; freeze takes it exclusively, so nothing commits while frozen",
    ),
    OptionSpec(
        "freeze_tables",
        "list[str]",
        "tables (table or schema.table) freeze locks IN SHARE MODE: no write to them "
        "commits while frozen (the user needs UPDATE on them)",
    ),
    OptionSpec(
        "freeze_database",
        "str",
        "database holding freeze_lock and freeze_tables (default: the endpoint's dbname)",
    ),
    OptionSpec(
        "freeze_timeout",
        "int",
        "seconds a freeze waits for freeze_lock and freeze_tables before it gives up",
        default=DEFAULT_FREEZE_TIMEOUT,
    ),
]


@dataclass(frozen=True)
class FreezeLocks:
    """What a freeze holds besides backup mode, from the endpoint's freeze options."""

    database: str | None
    lock_key: int | None
    tables: tuple[str, ...]
    timeout: int

    @property
    def any(self) -> bool:
        return self.lock_key is not None or bool(self.tables)


def freeze_locks(asset: AssetInfo) -> FreezeLocks:
    """The freeze options recorded with a cluster asset (its endpoint's options)."""
    conn = asset.metadata.get("connection")
    opts = dict(conn.get("options") or {}) if isinstance(conn, dict) else {}
    key = opts.get("freeze_lock")
    if key not in (None, ""):
        try:
            key = int(str(key))
        except ValueError:
            raise PluginError(
                f"{asset.name}: freeze_lock must be an integer, not {key!r}"
            ) from None
        if not -(2**63) <= key < 2**63:
            raise PluginError(f"{asset.name}: freeze_lock {key} is out of the bigint range")
    else:
        key = None
    tables = opts.get("freeze_tables") or []
    if isinstance(tables, str):
        tables = [t for t in tables.split(",") if t.strip()]
    timeout = opts.get("freeze_timeout", DEFAULT_FREEZE_TIMEOUT)
    if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 1:
        raise PluginError(f"{asset.name}: freeze_timeout must be a positive number of seconds")
    database = opts.get("freeze_database")
    return FreezeLocks(
        str(database) if database else None,
        key,
        tuple(str(t).strip() for t in tables),
        timeout,
    )


def _take_locks(settings: ConnectionSettings, locks: FreezeLocks, name: str) -> psycopg.Connection:
    """A session holding the freeze lock and table locks; PluginError after the timeout."""
    conn = open_connection(settings, locks.database)
    try:
        conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{locks.timeout}s",))
        if locks.lock_key is not None:
            # Session level: held until the session ends at thaw, whatever it runs meanwhile.
            conn.execute("SELECT pg_advisory_lock(%s)", (locks.lock_key,))
        if locks.tables:
            conn.autocommit = False  # table locks live as long as the transaction
            for table in locks.tables:
                conn.execute(
                    sql.SQL("LOCK TABLE {} IN SHARE MODE").format(
                        sql.Identifier(*table.split(".", 1))
                    )
                )
    except psycopg.errors.LockNotAvailable:
        conn.close()
        held = " and ".join(
            ([f"advisory lock {locks.lock_key}"] if locks.lock_key is not None else [])
            + ([f"tables {', '.join(locks.tables)}"] if locks.tables else [])
        )
        raise PluginError(
            f"{name}: could not take the freeze's {held} within {locks.timeout} s "
            "(freeze_timeout): a transaction holds it"
        ) from None
    except psycopg.Error as exc:
        conn.close()
        raise PluginError(f"{name}: cannot take the freeze locks: {str(exc).strip()}") from None
    return conn


@dataclass
class Frozen:
    conn: psycopg.Connection
    start_lsn: str
    locks: psycopg.Connection | None = None


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
        locks = freeze_locks(asset)
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
        held = None
        if locks.any:
            # Last, so writers wait only for the backup start's short checkpoint.
            try:
                held = _take_locks(settings, locks, asset.name)
            except BaseException:
                conn.close()  # ends backup mode with its session
                raise
        with self._lock:
            self._frozen[asset.external_id] = Frozen(conn, str(row[0]), held)
        ctx.logger.info(
            "%s frozen (backup mode from %s%s)",
            asset.name,
            row[0],
            "; writers held by the freeze locks" if held is not None else "",
        )
        return str(row[0])

    def mark(self, asset: AssetInfo, label: str) -> dict[str, object]:
        """A named restore point on a frozen cluster: recovery can stop exactly there."""
        with self._lock:
            frozen = self._frozen.get(asset.external_id)
        if frozen is None:
            raise PluginError(f"{asset.name} is not frozen: no mark to take")
        if "'" in label:
            raise PluginError("a restore point name must not contain a quote")
        try:
            row = frozen.conn.execute(
                "SELECT pg_create_restore_point(%s)::text, pg_walfile_name(pg_current_wal_lsn())",
                (label,),
            ).fetchone()
        except psycopg.Error as exc:
            raise PluginError(
                f"{asset.name}: cannot create restore point {label!r}: {str(exc).strip()}"
            ) from None
        assert row is not None
        return {
            "restore_point": label,
            "lsn": str(row[0]),
            "wal_file": str(row[1]),
            "writes_held": frozen.locks is not None,
        }

    def thaw(self, asset: AssetInfo, ctx: PluginContext) -> dict[str, str] | None:
        """Leave backup mode; returns the stop LSN and backup label (None: was not frozen)."""
        with self._lock:
            frozen = self._frozen.pop(asset.external_id, None)
        if frozen is None:
            return None
        if frozen.locks is not None:
            frozen.locks.close()  # releases the advisory and table locks: writers go on
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


def restore_options_for(mark: dict[str, object]) -> dict[str, object]:
    """Recovery target = the mark's restore point (``target_name``)."""
    name = mark.get("restore_point")
    return {"target_name": str(name)} if name else {}
