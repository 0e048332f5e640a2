"""What a MariaDB endpoint offers: one asset for the server, its databases listed in it."""

from __future__ import annotations

from tapir.appliance.plugin_api import AssetInfo, EndpointInfo

from .client import query, session
from .dumps import user_databases
from .options import ConnectionSettings, connection_info

ASSET_KIND = "mariadb-server"


def discover_server(endpoint: EndpointInfo, settings: ConnectionSettings) -> AssetInfo:
    """The server as one asset: physical backups and binlogs are server-wide."""
    with session(settings) as conn:
        hostname, port, version, datadir, log_bin, basename, fmt = query(
            conn,
            "SELECT @@hostname, @@port, @@version, @@datadir, @@log_bin, "
            "@@log_bin_basename, @@binlog_format",
        )[0]
        databases = user_databases(conn)
    return AssetInfo(
        kind=ASSET_KIND,
        name=f"{endpoint.name}",
        external_id=f"mariadb://{hostname}:{port}",
        metadata={
            "recovery_point_kind": "application",
            "host": str(hostname),
            "version": str(version),
            "datadir": str(datadir),
            "log_bin": bool(log_bin),
            "log_bin_basename": str(basename or ""),
            "binlog_format": str(fmt),
            "databases": databases,
            "connection": connection_info(endpoint),
        },
    )
