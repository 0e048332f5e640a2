"""The options of a MariaDB endpoint, job and restore, and the connection settings."""

from __future__ import annotations

from dataclasses import dataclass

from tapir.appliance.plugin_api import (
    AssetInfo,
    EndpointInfo,
    OptionSpec,
    PluginContext,
    PluginError,
)

DEFAULT_PORT = 3306
DEFAULT_FREEZE_TIMEOUT = 10
DUMP_CHOICES = ("never", "full", "always")

ENDPOINT_OPTIONS = [
    OptionSpec(
        "address", "str", "host[:port] (default port 3306) or the path of a unix socket", True
    ),
    OptionSpec(
        "user", "str", "account with the backup privileges (see docs/plugins/mariadb.md)", True
    ),
    OptionSpec(
        "password_secret",
        "secret",
        "name of the sealed catalog secret holding the password (set by `tapir endpoint add`)",
        True,
    ),
    OptionSpec(
        "freeze_timeout",
        "int",
        "seconds a freeze (FLUSH TABLES WITH READ LOCK) may hold writers back at most",
        default=DEFAULT_FREEZE_TIMEOUT,
    ),
]

JOB_OPTIONS = [
    OptionSpec(
        "dump",
        "choice",
        "logical dumps (mariadb-dump) for single database/table restore: with every full "
        "backup, with every full and incremental, or never",
        default="full",
        choices=DUMP_CHOICES,
    ),
    OptionSpec("databases", "list[str]", "databases to dump (default: every user database)"),
]

RESTORE_OPTIONS = [
    OptionSpec(
        "stop_datetime",
        "str",
        "replay binary logs up to (not including) this moment, ISO 8601; without a time "
        "zone it is the appliance's local time",
    ),
    OptionSpec(
        "stop_position",
        "str",
        "replay binary logs up to this position, FILE:POS (e.g. mariadb-bin.000007:1234)",
    ),
    OptionSpec(
        "force",
        "bool",
        "empty a target data directory that already holds files (else the restore refuses)",
        default=False,
    ),
    OptionSpec(
        "item",
        "str",
        "restore only this database (DB) or table (DB.TABLE) from the point's logical dump "
        "into the endpoint's server (use with in-place)",
    ),
    OptionSpec(
        "target_database",
        "str",
        "item restore: the database to restore a database or table into (default: its own)",
    ),
]


@dataclass(frozen=True)
class ConnectionSettings:
    """How to reach one server: TCP host and port, or a unix socket."""

    user: str
    password: str
    host: str | None = None
    port: int = DEFAULT_PORT
    socket: str | None = None
    freeze_timeout: int = DEFAULT_FREEZE_TIMEOUT

    @property
    def where(self) -> str:
        return self.socket if self.socket else f"{self.host}:{self.port}"

    def client_options(self) -> dict[str, str]:
        """The [client] options the MariaDB command-line tools need."""
        opts = {"user": self.user, "password": self.password}
        if self.socket:
            opts["socket"] = self.socket
        else:
            opts["host"] = str(self.host)
            opts["port"] = str(self.port)
        return opts


def parse_address(address: str) -> tuple[str | None, int, str | None]:
    """``(host, port, socket)`` of ``host[:port]``, ``[v6]:port`` or ``/path/to/socket``."""
    address = address.strip()
    if not address:
        raise ValueError("the address is empty")
    if address.startswith("/"):
        return None, DEFAULT_PORT, address
    host, port = address, DEFAULT_PORT
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        if rest.startswith(":"):
            port = _port(rest[1:])
    elif address.count(":") == 1:
        host, text = address.split(":")
        port = _port(text)
    if not host:
        raise ValueError(f"no host in address {address!r}")
    return host, port, None


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"port {text!r} is not a number from 1 to 65535")
    return int(text)


def connection_info(endpoint: EndpointInfo) -> dict[str, object]:
    """What an asset keeps of its endpoint so that freeze/thaw can reach the server.

    Only the secret's name is kept, never the password.
    """
    return {
        "endpoint": endpoint.name,
        "address": endpoint.address,
        "user": endpoint.options.get("user"),
        "password_secret": endpoint.options.get("password_secret"),
        "freeze_timeout": endpoint.options.get("freeze_timeout", DEFAULT_FREEZE_TIMEOUT),
    }


def settings_from(info: dict[str, object], name: str, ctx: PluginContext) -> ConnectionSettings:
    """Connection settings from endpoint options (or an asset's copy of them)."""
    try:
        host, port, sock = parse_address(str(info.get("address") or ""))
    except ValueError as exc:
        raise PluginError(f"endpoint {name}: {exc}") from None
    user = info.get("user")
    if not user or not isinstance(user, str):
        raise PluginError(f"endpoint {name} has no user option")
    secret = info.get("password_secret")
    if not secret or not isinstance(secret, str):
        raise PluginError(f"endpoint {name} has no password (password_secret option)")
    try:
        password = ctx.read_secret(secret)
    except KeyError:
        raise PluginError(
            f"endpoint {name}: the password secret {secret!r} is missing; register the "
            "endpoint again"
        ) from None
    timeout = info.get("freeze_timeout", DEFAULT_FREEZE_TIMEOUT)
    if isinstance(timeout, str) and timeout.isdigit():
        timeout = int(timeout)
    if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 1:
        raise PluginError(f"endpoint {name}: freeze_timeout must be a positive number of seconds")
    return ConnectionSettings(user, password, host, port, sock, timeout)


def endpoint_settings(endpoint: EndpointInfo | None, ctx: PluginContext) -> ConnectionSettings:
    """Settings of a registered endpoint; a MariaDB source always needs one."""
    if endpoint is None:
        raise PluginError("the mariadb plugin needs an endpoint (a MariaDB or MySQL server)")
    return settings_from({**endpoint.options, "address": endpoint.address}, endpoint.name, ctx)


def asset_settings(asset: AssetInfo, ctx: PluginContext) -> ConnectionSettings:
    """Settings from the connection an asset recorded at discovery (freeze/thaw)."""
    info = asset.metadata.get("connection")
    if not isinstance(info, dict):
        raise PluginError(f"{asset.name}: no connection recorded; discover its endpoint again")
    return settings_from(info, str(info.get("endpoint") or asset.name), ctx)
