"""The ``postgresql`` application role: endpoints, discovery, backups, restores, freeze.

Assets: the cluster behind an endpoint (``postgresql-cluster``: base backups,
WAL archiving, point-in-time restore) and each database
(``postgresql-database``: logical dumps, single database or table restore).
A job's ``mode`` option picks which of the two it protects.
"""

from __future__ import annotations

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

from . import archive, basebackup, logical
from .connection import connect
from .freeze import FREEZE_OPTIONS, FreezeSessions, restore_options_for
from .inventory import CLUSTER, DATABASE, cluster_asset, database_assets, inspect
from .options import ENDPOINT_OPTIONS, connection_settings
from .restore import restore_cluster
from .restore_options import RESTORE_OPTIONS

MODES = ("physical", "logical")

JOB_OPTIONS = [
    OptionSpec(
        "mode",
        "choice",
        "physical: the cluster (base backups; level log archives WAL for point-in-time "
        "restore); logical: a pg_dump of each database (single database or table restore)",
        default="physical",
        choices=MODES,
    ),
]


class PostgresqlPlugin(ApplicationPlugin):
    """PostgreSQL servers through the replication protocol and the client programs."""

    name = "postgresql"
    title = "PostgreSQL"

    def __init__(self) -> None:
        self._frozen = FreezeSessions()

    def endpoint_options(self) -> list[OptionSpec]:
        """address, user, password_secret, sslmode, ca_file, verify_tls, dbname, slot,
        connect_timeout, and what a freeze holds: freeze_lock, freeze_tables,
        freeze_database, freeze_timeout (see docs/plugins/postgresql.md)."""
        return [*ENDPOINT_OPTIONS, *FREEZE_OPTIONS]

    def job_options(self) -> list[OptionSpec]:
        """``mode``: physical (cluster, full and log levels) or logical (a dump per database)."""
        return list(JOB_OPTIONS)

    def restore_options(self) -> list[OptionSpec]:
        """Recovery target (``target_time``, ``target_lsn``, ``target_name``,
        ``target_inclusive``), how to start the restored server (``start``, ``port``,
        ``listen_addresses``, ``os_user``, ``recovery_timeout``), and for dumps ``item``
        and ``into_database``."""
        return list(RESTORE_OPTIONS)

    def capabilities(self) -> set[str]:
        """Full and log backups, point-in-time restore, item restore, quiesce (freeze/thaw)."""
        return {"log", "point-in-time", "item-restore", "quiesce"}

    def test_connection(self, endpoint: EndpointInfo, ctx: PluginContext) -> None:
        """Log in once; ConnectionFailed with the reason (wrong password, TLS, refused)."""
        settings = connection_settings(endpoint, ctx)
        with connect(settings) as conn:
            row = conn.execute("SELECT current_setting('server_version')").fetchone()
        ctx.logger.info("connected to %s: PostgreSQL %s", settings.address, row[0] if row else "?")

    def discover(self, endpoint: EndpointInfo | None, ctx: PluginContext) -> list[AssetInfo]:
        """The cluster (version, size, data checksums, wal_level) and each of its databases."""
        settings = connection_settings(endpoint, ctx)
        assert endpoint is not None
        cluster = inspect(settings)
        return [cluster_asset(settings, cluster, endpoint), *database_assets(settings, cluster)]

    def job_assets(
        self, endpoint: EndpointInfo | None, options: dict[str, object], ctx: PluginContext
    ) -> list[AssetInfo]:
        """``mode=physical``: the cluster; ``mode=logical``: its databases."""
        mode = str(options.get("mode") or "physical")
        if mode not in MODES:
            raise PluginError(f"job option mode must be one of {', '.join(MODES)}, not {mode!r}")
        kind = CLUSTER if mode == "physical" else DATABASE
        return [a for a in self.discover(endpoint, ctx) if a.kind == kind]

    def backup(self, request: BackupRequest, sink: BackupSink, ctx: PluginContext) -> BackupResult:
        """A cluster: a base backup (full) or the WAL since the previous point (log).
        A database: a pg_dump (any level)."""
        settings = connection_settings(request.endpoint, ctx)
        if request.asset.kind == DATABASE:
            database = str(request.asset.metadata.get("database") or request.asset.name)
            if request.level == BackupLevel.LOG:
                raise PluginError("log backups archive a cluster's WAL; a database is dumped whole")
            return BackupResult(metadata=logical.dump_database(settings, database, sink, ctx))
        if request.asset.kind != CLUSTER:
            raise PluginError(f"not a PostgreSQL asset: {request.asset.kind}")
        if request.level == BackupLevel.LOG:
            chain, metadata = archive.log_backup(settings, sink, ctx)
        else:
            cluster = inspect(settings)
            if cluster.system_identifier != request.asset.external_id:
                raise PluginError(
                    f"{settings.address} now runs another cluster (system identifier "
                    f"{cluster.system_identifier}, not {request.asset.external_id})"
                )
            chain, metadata = basebackup.full_backup(settings, cluster, sink, ctx)
            metadata["version"] = cluster.version
        sink.add(chain.item())
        metadata.update(
            system_identifier=chain.system_identifier,
            version_num=request.asset.metadata.get("version_num"),
            base_started_at=chain.base_started_at,
            recoverable_until=chain.recoverable_until,
        )
        if request.options.get("consistency_mark"):
            # A consistency group's moment: restoring the group recovers to it.
            metadata["consistency_mark"] = request.options["consistency_mark"]
        return BackupResult(metadata=metadata)

    def restore(
        self, request: RestoreRequest, source: RestoreSource, ctx: PluginContext
    ) -> RestoreResult:
        """A cluster point: a new data directory recovered to latest or the recovery target,
        started unless ``start=false``. A dump: the dump file into the target folder, or
        in place (or with ``item`` or ``into_database``) restored into the endpoint's
        server (see :meth:`restore_item`)."""
        if request.asset.kind == DATABASE:
            item = request.options.get("item")
            if request.in_place or item is not None or request.options.get("into_database"):
                return self.restore_item(request, str(item or ""), source, ctx)
            return logical.write_dump(request, source, ctx)
        return restore_cluster(request, source, ctx)

    def restore_item(
        self, request: RestoreRequest, item: str, source: RestoreSource, ctx: PluginContext
    ) -> RestoreResult:
        """From a database dump: the whole database (``item`` empty or its name) or one
        table (``table`` or ``schema.table``) into the endpoint's server, into the
        database ``into_database`` (default: the original). Existing data is refused
        unless ``request.overwrite == "always"``."""
        if request.asset.kind != DATABASE:
            raise PluginError(
                "single item restore works from a logical dump (a job with mode=logical)"
            )
        settings = connection_settings(request.endpoint, ctx)
        return logical.restore_into_server(settings, request, item, source, ctx)

    def freeze(self, asset: AssetInfo, ctx: PluginContext) -> None:
        """A cluster: CHECKPOINT, then pg_backup_start in a session kept until thaw."""
        if asset.kind == CLUSTER:
            self._frozen.freeze(asset, ctx)

    def thaw(self, asset: AssetInfo, ctx: PluginContext) -> None:
        """pg_backup_stop in the freeze's session (nothing when it was not frozen)."""
        if asset.kind == CLUSTER:
            self._frozen.thaw(asset, ctx)

    def mark(self, asset: AssetInfo, ctx: PluginContext, label: str) -> dict[str, object]:
        """A frozen cluster: ``pg_create_restore_point(label)`` and its WAL position."""
        if asset.kind != CLUSTER:
            raise PluginError(
                f"{asset.name}: a consistency group needs the cluster (a job with mode=physical)"
            )
        return self._frozen.mark(asset, label)

    def mark_restore_options(self, mark: dict[str, object]) -> dict[str, object]:
        """``target_name``: recovery stops at the group's restore point."""
        return restore_options_for(mark)
