"""The ``mariadb`` application role: wires discovery, backups, restores and freeze/thaw."""

from __future__ import annotations

import dataclasses

from tapir.appliance.plugin_api import (
    ApplicationPlugin,
    AssetInfo,
    BackupLevel,
    BackupRequest,
    BackupResult,
    BackupSink,
    EndpointInfo,
    OptionSpec,
    PluginContext,
    PluginError,
    RestoreRequest,
    RestoreResult,
    RestoreSource,
)

from .binlogs import archive_binlogs
from .chain import CHAIN_PATH, Chain
from .client import query, session
from .discovery import discover_server
from .dumps import dump_databases
from .freeze import FreezeRegistry, mark_of, restore_options_for
from .item_restore import restore_one
from .options import (
    DUMP_CHOICES,
    ENDPOINT_OPTIONS,
    JOB_OPTIONS,
    RESTORE_OPTIONS,
    asset_settings,
    endpoint_settings,
)
from .physical import stream_backup
from .restore import restore_datadir


class MariaDBPlugin(ApplicationPlugin):
    """MariaDB and MySQL servers through mariadb-backup, binary logs and mariadb-dump."""

    name = "mariadb"
    title = "MariaDB / MySQL"

    def __init__(self) -> None:
        self._freezes = FreezeRegistry()

    def endpoint_options(self) -> list[OptionSpec]:
        """address (host[:port] or socket path), user, password secret, freeze_timeout."""
        return list(ENDPOINT_OPTIONS)

    def job_options(self) -> list[OptionSpec]:
        """``dump`` (never, full, always) and ``databases`` to dump."""
        return list(JOB_OPTIONS)

    def restore_options(self) -> list[OptionSpec]:
        """``stop_datetime``, ``stop_position``, ``force``, ``item``, ``target_database``."""
        return list(RESTORE_OPTIONS)

    def capabilities(self) -> set[str]:
        """Incrementals, binlog (log) backups, point-in-time and item restore, quiescing."""
        return {"incremental", "log", "point-in-time", "item-restore", "quiesce"}

    def test_connection(self, endpoint: EndpointInfo, ctx: PluginContext) -> None:
        """Log in once; ConnectionFailed with the reason (wrong password, unreachable)."""
        settings = endpoint_settings(endpoint, ctx)
        with session(settings) as conn:
            version = query(conn, "SELECT @@version")[0][0]
        ctx.logger.info("connected to %s: MariaDB %s", settings.where, version)

    def discover(self, endpoint: EndpointInfo | None, ctx: PluginContext) -> list[AssetInfo]:
        """The server as one asset (kind ``mariadb-server``) listing its databases."""
        settings = endpoint_settings(endpoint, ctx)
        assert endpoint is not None
        asset = discover_server(endpoint, settings)
        if not asset.metadata["log_bin"]:
            ctx.logger.warning(
                "%s: binary logging is off: no log backups or point-in-time recovery", endpoint.name
            )
        return [asset]

    def freeze(self, asset: AssetInfo, ctx: PluginContext) -> None:
        """FLUSH TABLES WITH READ LOCK on a session held until thaw (at most freeze_timeout)."""
        settings = asset_settings(asset, ctx)
        position = self._freezes.freeze(asset.external_id, settings)
        ctx.logger.info("%s frozen at %s", asset.name, position or "(no binary log)")

    def thaw(self, asset: AssetInfo, ctx: PluginContext) -> None:
        """Release the lock; raises PluginError when it had run out before."""
        self._freezes.thaw(asset.external_id)

    def mark(self, asset: AssetInfo, ctx: PluginContext, label: str) -> dict[str, object]:
        """The binary log file and position read under the freeze's lock (the group's moment)."""
        return mark_of(self._freezes, asset.external_id, asset.name)

    def mark_restore_options(self, mark: dict[str, object]) -> dict[str, object]:
        """``stop_position`` at the mark: binlogs replay exactly up to the group's moment."""
        return restore_options_for(mark)

    def backup(self, request: BackupRequest, sink: BackupSink, ctx: PluginContext) -> BackupResult:
        """A full or incremental physical backup, or a binlog archive (log level).

        Every point is complete: it references its parent's backups, binlogs and
        dumps unchanged and adds its own, listed in its ``chain`` item.
        """
        settings = endpoint_settings(request.endpoint, ctx)
        dump = str(request.options.get("dump", "full"))
        if dump not in DUMP_CHOICES:
            raise PluginError(f"job option dump must be one of {', '.join(DUMP_CHOICES)}")
        databases = request.options.get("databases") or None
        parent = self._parent_chain(sink) if request.level != BackupLevel.FULL else None
        level = request.level
        if level == BackupLevel.INCREMENTAL and parent is None:
            sink.warn(CHAIN_PATH, "the parent holds no MariaDB chain: made a full backup")
            level = BackupLevel.FULL
        if level == BackupLevel.LOG and parent is None:
            raise PluginError("a log backup needs a previous MariaDB full backup of this job")
        chain = Chain() if parent is None else dataclasses.replace(parent)
        metadata: dict[str, object] = {}
        frozen = self._freezes.position(request.asset.external_id)
        if frozen:
            metadata["frozen_at"] = frozen
        if request.options.get("consistency_mark"):
            # A consistency group's moment: restoring the group stops the binlogs there.
            metadata["consistency_mark"] = request.options["consistency_mark"]
        with session(settings) as conn:
            version, datadir = query(conn, "SELECT @@version, @@datadir")[0]
            metadata["version"] = str(version)
            if parent is not None:
                self._carry([e.path for e in (*parent.physical, *parent.binlogs)], sink)
            if level == BackupLevel.LOG:
                kept, closed_at = archive_binlogs(settings, conn, chain, sink, ctx)
                chain.binlogs = [*chain.binlogs, *kept]
                chain.archived_until = closed_at
                metadata["binlogs"] = [b.name for b in kept]
            else:
                n = len(chain.physical)
                lsn = None if level == BackupLevel.FULL else chain.physical[-1].to_lsn
                path = f"physical/{n:04d}-{level}.xbstream"
                backup = stream_backup(settings, str(datadir), path, sink, ctx, incremental_lsn=lsn)
                backup.time = float(query(conn, "SELECT UNIX_TIMESTAMP(NOW(6))")[0][0])
                chain.physical = [*chain.physical, backup]
                metadata["backup"] = dataclasses.asdict(backup)
                if dump == "always" or (dump == "full" and level == BackupLevel.FULL):
                    fresh = dump_databases(settings, conn, databases, f"dump/{n:04d}", sink, ctx)
                    names = {d.database for d in fresh}
                    chain.dumps = [d for d in chain.dumps if d.database not in names] + fresh
            # Dumps a fresh one replaced are left behind; the others stay referenced.
            self._carry([d.path for d in chain.dumps if parent and d in parent.dumps], sink)
        sink.add(chain.as_item())
        metadata["chain"] = chain.doc()
        return BackupResult(metadata=metadata)

    def _parent_chain(self, sink: BackupSink) -> Chain | None:
        if sink.parent is None:
            return None
        item = sink.parent.lookup(CHAIN_PATH)
        return None if item is None else Chain.from_item(item)

    def _carry(self, paths: list[str], sink: BackupSink) -> None:
        """Reference the parent's data items unchanged (no data is read or copied)."""
        assert sink.parent is not None or not paths
        for text in paths:
            path = text.encode()
            item = sink.parent.lookup(path)  # type: ignore[union-attr]
            if item is None:
                raise PluginError(f"the parent point lacks {path.decode()}: take a full backup")
            sink.add(item)

    def restore(
        self, request: RestoreRequest, source: RestoreSource, ctx: PluginContext
    ) -> RestoreResult:
        """The whole server into a new data directory, up to ``stop_datetime`` /
        ``stop_position`` or to the point's last change; with the ``item`` option, one
        database or table through :meth:`restore_item`."""
        item = request.options.get("item")
        if item:
            return restore_one(
                request, str(item), source, endpoint_settings(request.endpoint, ctx), ctx
            )
        # The endpoint's account replays the binlogs; a restore without them needs no endpoint.
        settings = endpoint_settings(request.endpoint, ctx) if request.endpoint else None
        return restore_datadir(request, source, settings, ctx)

    def restore_item(
        self, request: RestoreRequest, item: str, source: RestoreSource, ctx: PluginContext
    ) -> RestoreResult:
        """One database (``shop``) or table (``shop.orders``) from the point's logical dump,
        into the endpoint's server (under ``target_database`` when given)."""
        settings = endpoint_settings(request.endpoint, ctx)
        return restore_one(request, item, source, settings, ctx)
