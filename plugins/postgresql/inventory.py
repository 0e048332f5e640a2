"""Discovery: the cluster behind an endpoint and its databases, as assets."""

from __future__ import annotations

from dataclasses import dataclass

from tapir.appliance.plugin_api import AssetInfo, EndpointInfo

from .connection import connect
from .options import ConnectionSettings

CLUSTER = "postgresql-cluster"
DATABASE = "postgresql-database"


@dataclass(frozen=True)
class Cluster:
    """What discovery learned about one server."""

    system_identifier: str
    version: str
    version_num: int
    data_checksums: bool
    wal_level: str
    size: int
    databases: dict[str, int]  # name -> size in bytes
    tablespaces: list[str]

    @property
    def major(self) -> int:
        return self.version_num // 10000


def inspect(settings: ConnectionSettings) -> Cluster:
    """Ask the server about itself (one session)."""
    with connect(settings) as conn:
        sysid = conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()
        row = conn.execute(
            "SELECT current_setting('server_version'), current_setting('server_version_num'),"
            " current_setting('data_checksums'), current_setting('wal_level')"
        ).fetchone()
        dbs = conn.execute(
            "SELECT datname, pg_database_size(oid) FROM pg_database"
            " WHERE datallowconn AND NOT datistemplate ORDER BY datname"
        ).fetchall()
        spaces = conn.execute(
            "SELECT spcname FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')"
        ).fetchall()
    assert sysid is not None and row is not None
    databases = {name: int(size) for name, size in dbs}
    return Cluster(
        system_identifier=str(sysid[0]),
        version=str(row[0]),
        version_num=int(row[1]),
        data_checksums=row[2] == "on",
        wal_level=str(row[3]),
        size=sum(databases.values()),
        databases=databases,
        tablespaces=[r[0] for r in spaces],
    )


def cluster_asset(
    settings: ConnectionSettings, cluster: Cluster, endpoint: EndpointInfo
) -> AssetInfo:
    """The whole cluster: what base backups, WAL archiving and PITR protect.

    ``connection`` repeats the endpoint (its secret's name, never the password):
    freeze and thaw receive only the asset.
    """
    return AssetInfo(
        kind=CLUSTER,
        name=settings.address,
        external_id=cluster.system_identifier,
        metadata={
            "host": settings.host,
            "version": cluster.version,
            "version_num": cluster.version_num,
            "size": cluster.size,
            "data_checksums": cluster.data_checksums,
            "wal_level": cluster.wal_level,
            "databases": sorted(cluster.databases),
            "tablespaces": cluster.tablespaces,
            "endpoint": settings.endpoint,
            "connection": {
                "endpoint": endpoint.name,
                "address": endpoint.address,
                "options": dict(endpoint.options),
            },
        },
    )


def database_assets(settings: ConnectionSettings, cluster: Cluster) -> list[AssetInfo]:
    """One asset per database that accepts connections: what logical dumps protect."""
    return [
        AssetInfo(
            kind=DATABASE,
            name=name,
            external_id=f"{cluster.system_identifier}/{name}",
            metadata={
                "host": settings.host,
                "cluster": settings.address,
                "database": name,
                "version": cluster.version,
                "version_num": cluster.version_num,
                "size": size,
                "endpoint": settings.endpoint,
            },
        )
        for name, size in cluster.databases.items()
    ]
