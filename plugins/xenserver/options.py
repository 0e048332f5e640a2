"""The options of a XenServer endpoint and of a job, and the settings made from them."""

from __future__ import annotations

from tapir.appliance.plugin_api import EndpointInfo, OptionSpec, PluginContext, PluginError
from tapir.appliance.plugin_api.endpoints import (
    endpoint_credentials,
    login_option_specs,
    pinned_fingerprint,
    positive_int,
    tls_option_specs,
)
from tapir.appliance.plugin_api.option_values import parse_bool as as_bool

from .connection import DEFAULT_TIMEOUT, ConnectionSettings, parse_address

ENDPOINT_OPTIONS = [
    OptionSpec(
        "address",
        "str",
        "pool master (any pool member works: the master is found), HOST[:PORT]",
        True,
    ),
    *login_option_specs("user name, e.g. root or an RBAC account"),
    *tls_option_specs(DEFAULT_TIMEOUT, certificate="the pool"),
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
