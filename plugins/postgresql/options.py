"""The options of a PostgreSQL endpoint, and the connection settings made from them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from tapir.appliance.plugin_api import EndpointInfo, OptionSpec, PluginContext, PluginError
from tapir.appliance.plugin_api.option_values import parse_bool

DEFAULT_PORT = 5432
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_SLOT_NAME = re.compile(r"^[a-z0-9_]{1,63}$")

ENDPOINT_OPTIONS = [
    OptionSpec("address", "str", "server host name or IP, optionally :port (default 5432)", True),
    OptionSpec(
        "user", "str", "a role with LOGIN and REPLICATION (see docs/plugins/postgresql.md)", True
    ),
    OptionSpec(
        "password_secret",
        "secret",
        "name of the sealed catalog secret holding the password (set by `tapir endpoint add`)",
    ),
    OptionSpec("sslmode", "choice", "libpq's sslmode", default="prefer", choices=SSL_MODES),
    OptionSpec("ca_file", "path", "CA certificates (PEM) to verify the server against"),
    OptionSpec(
        "verify_tls",
        "bool",
        "with ca_file: verify the certificate and host name (sslmode verify-full)",
        default=True,
    ),
    OptionSpec("dbname", "str", "database to connect to for discovery", default="postgres"),
    OptionSpec(
        "slot",
        "str",
        "physical replication slot that keeps WAL for Tapir between log backups",
        default="tapir",
    ),
    OptionSpec("connect_timeout", "int", "seconds to wait for a connection", default=10),
]


@dataclass(frozen=True)
class ConnectionSettings:
    """Everything needed to reach one server, with the password unsealed."""

    endpoint: str
    host: str
    port: int
    user: str
    password: str | None
    sslmode: str
    ca_file: str | None
    dbname: str
    slot: str
    connect_timeout: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def conninfo(self, dbname: str | None = None) -> dict[str, object]:
        """Keyword arguments for ``psycopg.connect``."""
        params: dict[str, object] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "dbname": dbname or self.dbname,
            "sslmode": self.sslmode,
            "connect_timeout": self.connect_timeout,
            "application_name": "tapir",
        }
        if self.password is not None:
            params["password"] = self.password
        if self.ca_file:
            params["sslrootcert"] = self.ca_file
        return params

    def environment(self) -> dict[str, str]:
        """libpq variables for the client programs (the password never on a command line)."""
        env = {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGDATABASE": self.dbname,
            "PGSSLMODE": self.sslmode,
            "PGCONNECT_TIMEOUT": str(self.connect_timeout),
            "PGAPPNAME": "tapir",
        }
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        if self.ca_file:
            env["PGSSLROOTCERT"] = self.ca_file
        return env


def parse_address(address: str) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6]:port``; ValueError when the port is no number."""
    address = address.strip()
    if not address:
        raise ValueError("the address is empty")
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        port = rest.removeprefix(":") or str(DEFAULT_PORT)
    elif address.count(":") == 1:
        host, port = address.split(":")
    else:
        host, port = address, str(DEFAULT_PORT)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{port!r} is not a TCP port")
    return host, int(port)


def settings_from(
    name: str, address: str, opts: Mapping[str, object], ctx: PluginContext
) -> ConnectionSettings:
    """Settings from an endpoint's name, address and options; the password read sealed."""
    try:
        host, port = parse_address(address)
    except ValueError as exc:
        raise PluginError(f"endpoint {name}: {exc}") from None
    user = opts.get("user")
    if not user or not isinstance(user, str):
        raise PluginError(f"endpoint {name} has no user option")
    password = None
    secret = opts.get("password_secret")
    if secret:
        try:
            password = ctx.read_secret(str(secret))
        except KeyError:
            raise PluginError(
                f"endpoint {name}: the password secret {secret!r} is missing; "
                "register the endpoint again"
            ) from None
    sslmode = str(opts.get("sslmode") or "prefer")
    if sslmode not in SSL_MODES:
        raise PluginError(f"endpoint {name}: sslmode must be one of {', '.join(SSL_MODES)}")
    ca_file = opts.get("ca_file")
    if (
        ca_file
        and sslmode in ("allow", "prefer", "require")
        and parse_bool(opts.get("verify_tls", True), "verify_tls", "endpoint option")
    ):
        sslmode = "verify-full"  # a CA given means the operator wants it checked
    verify = opts.get("verify_tls")
    if (
        verify is not None
        and not parse_bool(verify, "verify_tls", "endpoint option")
        and sslmode.startswith("verify")
    ):
        sslmode = "require"
    slot = str(opts.get("slot") or "tapir")
    if not _SLOT_NAME.match(slot):
        raise PluginError(
            f"endpoint {name}: slot {slot!r} must be 1-63 lower-case letters, digits or '_'"
        )
    timeout = opts.get("connect_timeout", 10)
    if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 1:
        raise PluginError(f"endpoint {name}: connect_timeout must be a positive integer")
    return ConnectionSettings(
        endpoint=name,
        host=host,
        port=port,
        user=user,
        password=password,
        sslmode=sslmode,
        ca_file=str(ca_file) if ca_file else None,
        dbname=str(opts.get("dbname") or "postgres"),
        slot=slot,
        connect_timeout=timeout,
    )


def connection_settings(endpoint: EndpointInfo | None, ctx: PluginContext) -> ConnectionSettings:
    """Settings to reach ``endpoint`` (a registered PostgreSQL server)."""
    if endpoint is None:
        raise PluginError("the postgresql plugin needs an endpoint (tapir endpoint add)")
    return settings_from(endpoint.name, endpoint.address, endpoint.options, ctx)
