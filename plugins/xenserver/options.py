"""The options of a XenServer endpoint and of a job, and the settings made from them."""

from __future__ import annotations

from tapir.appliance.plugin_api import EndpointInfo, OptionSpec, PluginContext, PluginError
from tapir.appliance.plugin_api.endpoints import (
    endpoint_credentials,
    pinned_fingerprint,
    positive_int,
)

from .connection import DEFAULT_TIMEOUT, ConnectionSettings, parse_address

ENDPOINT_OPTIONS = [
    OptionSpec(
        "address",
        "str",
        "pool master (any pool member works: the master is found), HOST[:PORT]",
        True,
    ),
    OptionSpec("user", "str", "user name, e.g. root or an RBAC account", True),
    OptionSpec(
        "password_secret",
        "secret",
        "name of the sealed catalog secret holding the password (set by `tapir endpoint add`)",
        True,
    ),
    OptionSpec(
        "verify_tls",
        "bool",
        "verify the server certificate against the system's CAs (or ca_file)",
        default=True,
    ),
    OptionSpec(
        "fingerprint",
        "str",
        "SHA-256 fingerprint of the pool's certificate to accept instead of a CA-signed one",
    ),
    OptionSpec("ca_file", "path", "CA certificates (PEM) to verify the server against"),
    OptionSpec("timeout", "int", "seconds to wait for an answer", default=DEFAULT_TIMEOUT),
]

JOB_OPTIONS = [
    OptionSpec(
        "quiesce",
        "bool",
        "ask for a quiesced snapshot (VSS) where the VM allows it; a warning otherwise",
        default=False,
    ),
    OptionSpec(
        "cbt",
        "bool",
        "enable changed block tracking on the VM's disks for incremental backups",
        default=True,
    ),
]


def as_bool(value: object, name: str, what: str = "option") -> bool:
    """A boolean option given as a bool or as true/false, yes/no, 1/0."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.lower() in ("true", "yes", "1")
    raise PluginError(f"{what} {name!r} must be true or false, not {value!r}")


def connection_settings(endpoint: EndpointInfo, ctx: PluginContext) -> ConnectionSettings:
    """Settings to log in to ``endpoint``, the password read from the sealed secret."""
    opts = endpoint.options
    try:
        scheme, host, port = parse_address(endpoint.address)
    except ValueError as exc:
        raise PluginError(f"endpoint {endpoint.name}: {exc}") from None
    user, password = endpoint_credentials(endpoint, ctx)
    pinned = pinned_fingerprint(endpoint)
    timeout = positive_int(endpoint, "timeout", DEFAULT_TIMEOUT)
    ca_file = opts.get("ca_file")
    return ConnectionSettings(
        host=host,
        port=port,
        user=user,
        password=password,
        scheme=scheme,
        verify_tls=as_bool(opts.get("verify_tls", True), "verify_tls", "endpoint option"),
        fingerprint=pinned,
        ca_file=str(ca_file) if ca_file else None,
        timeout=timeout,
    )
