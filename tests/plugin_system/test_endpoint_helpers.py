"""The plugin API's endpoint helpers: addresses, credentials, fingerprints, TLS contexts."""

from __future__ import annotations

import logging
import ssl

import pytest

from tapir.appliance.plugin_api import EndpointInfo, PluginContext, PluginError
from tapir.appliance.plugin_api.endpoints import (
    PinnedContext,
    endpoint_credentials,
    format_fingerprint,
    normalize_fingerprint,
    pinned_fingerprint,
    positive_int,
    split_host_port,
    tls_context,
)

PIN = "ab" * 32


@pytest.mark.parametrize(
    ("text", "expected"),
    [("h", ("h", 9)), ("h:10", ("h", 10)), ("[::1]", ("::1", 9)), ("[::1]:11", ("::1", 11))],
)
def test_split_host_port(text: str, expected: tuple[str, int]) -> None:
    assert split_host_port(text, 9) == expected


@pytest.mark.parametrize("text", ["", "h:x", "h:0", "h:70000", "[::1", "[::1]x", "a b", "u@h"])
def test_split_host_port_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        split_host_port(text, 9)


def _endpoint(**options: object) -> EndpointInfo:
    return EndpointInfo("ep", "x", "h", dict(options))


def test_credentials_come_from_the_sealed_secret() -> None:
    ctx = PluginContext(logging.getLogger("t"), read_secret={"s": "pw"}.__getitem__)
    assert endpoint_credentials(_endpoint(user="u", password_secret="s"), ctx) == ("u", "pw")
    with pytest.raises(PluginError, match="endpoint ep has no user option"):
        endpoint_credentials(_endpoint(password_secret="s"), ctx)
    with pytest.raises(PluginError, match="has no password"):
        endpoint_credentials(_endpoint(user="u"), ctx)
    with pytest.raises(PluginError, match="secret 'gone' is missing"):
        endpoint_credentials(_endpoint(user="u", password_secret="gone"), ctx)


def test_fingerprints_and_numbers() -> None:
    shown = format_fingerprint(PIN)
    assert shown.startswith("AB:AB") and normalize_fingerprint(shown) == PIN
    assert normalize_fingerprint("sha256:" + PIN.upper()) == PIN
    assert pinned_fingerprint(_endpoint(fingerprint=shown)) == PIN
    assert pinned_fingerprint(_endpoint()) is None
    with pytest.raises(PluginError, match="invalid certificate fingerprint"):
        pinned_fingerprint(_endpoint(fingerprint="abc"))
    assert positive_int(_endpoint(timeout="7"), "timeout", 30) == 7
    assert positive_int(_endpoint(), "timeout", 30) == 30
    for bad in (0, True, "x"):
        with pytest.raises(PluginError, match="timeout must be a positive integer"):
            positive_int(_endpoint(timeout=bad), "timeout", 30)


def test_tls_contexts() -> None:
    pinned = tls_context(fingerprint=PIN)
    assert isinstance(pinned, PinnedContext) and pinned.expected == PIN
    loose = tls_context(verify_tls=False)
    assert loose.verify_mode == ssl.CERT_NONE and not loose.check_hostname
    strict = tls_context()
    assert strict.verify_mode == ssl.CERT_REQUIRED and strict.check_hostname
