"""Helpers for plugins that log in to a remote endpoint: addresses, credentials, TLS.

Every endpoint plugin (a vCenter, a XenServer pool, a database server) parses a
``host:port`` address, reads the password the operator sealed for the endpoint,
and, over TLS, either verifies the server's certificate or checks a pinned
SHA-256 fingerprint. These are the appliance's one implementation of each, so
that every plugin refuses a wrong certificate the same way, before a password
leaves the appliance.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import ssl
from typing import Any

from .context import EndpointInfo, OptionSpec, PluginContext
from .errors import PluginError

_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")


def split_host_port(text: str, default_port: int) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT`` or ``[IPv6]:PORT`` into (host, port); ValueError when malformed."""
    original = text
    text = text.strip()
    if not text:
        raise ValueError("the endpoint address is empty")
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"malformed address {original!r}: unclosed '['")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"malformed address {original!r}")
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if not host or any(c.isspace() or c in "/?#@" for c in host):
        raise ValueError(f"malformed address {original!r}")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"malformed address {original!r}: bad port {port_text!r}")
    return host, int(port_text)


def endpoint_credentials(endpoint: EndpointInfo, ctx: PluginContext) -> tuple[str, str]:
    """(user, password) of an endpoint: the ``user`` option and its sealed password.

    The password is the secret named by the ``password_secret`` option, which
    ``tapir endpoint add`` seals. PluginError, naming the endpoint, when either is
    missing.
    """
    opts = endpoint.options
    user = opts.get("user")
    if not user or not isinstance(user, str):
        raise PluginError(f"endpoint {endpoint.name} has no user option")
    secret = opts.get("password_secret")
    if not secret or not isinstance(secret, str):
        raise PluginError(f"endpoint {endpoint.name} has no password (password_secret option)")
    try:
        return user, ctx.read_secret(secret)
    except KeyError:
        raise PluginError(
            f"endpoint {endpoint.name}: the password secret {secret!r} is missing; "
            "register the endpoint again"
        ) from None


def positive_int(endpoint: EndpointInfo, name: str, default: int) -> int:
    """An endpoint option that must be a positive whole number (given as int or digits)."""
    value = endpoint.options.get(name, default)
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise PluginError(f"endpoint {endpoint.name}: {name} must be a positive integer")
    return value


def normalize_fingerprint(value: str) -> str:
    """A SHA-256 fingerprint as 64 lower-case hex digits (colons, case, "sha256:" accepted)."""
    text = value.strip().lower().replace(":", "")
    if text.startswith("sha256"):
        text = text[len("sha256") :].lstrip("=:")
    if not _FINGERPRINT.match(text):
        raise ValueError(
            f"invalid certificate fingerprint {value!r}: expected the SHA-256 "
            "(64 hex digits, colons allowed)"
        )
    return text


def pinned_fingerprint(endpoint: EndpointInfo) -> str | None:
    """The endpoint's ``fingerprint`` option, normalized; None when it pins nothing."""
    value = endpoint.options.get("fingerprint")
    try:
        return normalize_fingerprint(str(value)) if value else None
    except ValueError as exc:
        raise PluginError(f"endpoint {endpoint.name}: {exc}") from None


def format_fingerprint(hex_digest: str) -> str:
    """``AB:CD:...``, as browsers and hypervisor consoles show a certificate's fingerprint."""
    return ":".join(hex_digest[i : i + 2] for i in range(0, len(hex_digest), 2)).upper()


class CertificateMismatch(OSError):
    """The server's certificate is not the pinned one."""

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"certificate fingerprint {actual} is not the pinned {expected}")
        self.expected = expected
        self.actual = actual


class PinnedContext(ssl.SSLContext):
    """A TLS context that accepts exactly one certificate, named by its SHA-256.

    The check runs inside every handshake this context makes (a client library may
    open several connections), before a byte of the request is sent, so the
    password never reaches a server with another certificate.
    """

    expected: str

    def __new__(cls, expected: str) -> PinnedContext:
        context = super().__new__(cls, ssl.PROTOCOL_TLS_CLIENT)
        context.expected = expected
        # Trust comes from the pin, not from a CA or the host name.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context

    def __init__(self, expected: str) -> None:
        # Everything is set in __new__ (ssl.SSLContext is configured at creation).
        pass

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:  # type: ignore[override]
        """Wrap and hand-shake as usual, then refuse a certificate other than the pinned one."""
        kwargs["do_handshake_on_connect"] = True
        sock = super().wrap_socket(*args, **kwargs)
        der = sock.getpeercert(binary_form=True) or b""
        actual = hashlib.sha256(der).hexdigest()
        if not hmac.compare_digest(actual, self.expected):
            sock.close()
            raise CertificateMismatch(self.expected, actual)
        return sock


def tls_context(
    *, verify_tls: bool = True, fingerprint: str | None = None, ca_file: str | None = None
) -> ssl.SSLContext:
    """The client TLS context an endpoint's settings ask for.

    A pinned fingerprint wins (exactly that certificate); otherwise the system's
    CAs (or ``ca_file``) verify the server and its name, unless ``verify_tls`` is
    off, which accepts any certificate (the operator's explicit choice).
    """
    if fingerprint:
        return PinnedContext(normalize_fingerprint(fingerprint))
    if not verify_tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=ca_file)


def login_option_specs(user_help: str) -> list[OptionSpec]:
    """The ``user`` and ``password_secret`` options that :func:`endpoint_credentials` reads."""
    return [
        OptionSpec("user", "str", user_help, True),
        OptionSpec(
            "password_secret",
            "secret",
            "name of the sealed catalog secret holding the password (set by `tapir endpoint add`)",
            True,
        ),
    ]


def tls_option_specs(default_timeout: int, certificate: str = "the server") -> list[OptionSpec]:
    """``verify_tls``, ``fingerprint``, ``ca_file`` and ``timeout``, as :func:`tls_context`,
    :func:`pinned_fingerprint` and :func:`positive_int` read them."""
    return [
        OptionSpec(
            "verify_tls",
            "bool",
            "verify the server certificate against the system's CAs (or ca_file)",
            default=True,
        ),
        OptionSpec(
            "fingerprint",
            "str",
            f"SHA-256 fingerprint of {certificate}'s certificate to accept instead of a "
            "CA-signed one",
        ),
        OptionSpec("ca_file", "path", "CA certificates (PEM) to verify the server against"),
        OptionSpec("timeout", "int", "seconds to wait for an answer", default=default_timeout),
    ]
