"""The options of a vSphere endpoint, and the connection settings made from them."""

from __future__ import annotations

from tapir.appliance.plugin_api import EndpointInfo, OptionSpec, PluginContext, PluginError
from tapir.appliance.plugin_api.endpoints import (
    endpoint_credentials,
    pinned_fingerprint,
    positive_int,
)

from .connection import DEFAULT_TIMEOUT, ConnectionSettings, parse_address
from .vddk import VDDK_ENDPOINT_OPTIONS

ENDPOINT_OPTIONS = [
    OptionSpec("address", "str", "vCenter or ESXi host name or IP, optionally :port", True),
    OptionSpec("user", "str", "user name, e.g. backup@vsphere.local", True),
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
        "SHA-256 fingerprint of the server certificate to accept instead of a CA-signed one",
    ),
    OptionSpec("ca_file", "path", "CA certificates (PEM) to verify the server against"),
    OptionSpec("timeout", "int", "seconds to wait for an answer", default=DEFAULT_TIMEOUT),
    *VDDK_ENDPOINT_OPTIONS,
]


def _bool(value: object, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.lower() in ("true", "yes", "1")
    raise PluginError(f"endpoint option {name!r} must be true or false, not {value!r}")


def connection_settings(endpoint: EndpointInfo, ctx: PluginContext) -> ConnectionSettings:
    """Settings to log in to ``endpoint``, the password read from the sealed secret."""
    opts = endpoint.options
    try:
        host, port = parse_address(endpoint.address)
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
        verify_tls=_bool(opts.get("verify_tls", True), "verify_tls"),
        fingerprint=pinned,
        ca_file=str(ca_file) if ca_file else None,
        timeout=timeout,
    )
