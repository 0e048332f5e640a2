"""Logging in to a vCenter or ESXi over HTTPS, with the certificate checked.

TLS verification is on by default. For the self-signed certificate most vCenters
present, the operator pins its SHA-256 fingerprint instead of turning
verification off; a pinned fingerprint is checked on every connection, before
the password is sent.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import re
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

from tapir.appliance.plugin_api import ConnectionFailed, PluginError

DEFAULT_PORT = 443
DEFAULT_TIMEOUT = 30
_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ConnectionSettings:
    """Where and how to log in; built from an endpoint's address and options."""

    host: str
    port: int
    user: str
    password: str
    verify_tls: bool = True
    fingerprint: str | None = None  # SHA-256 of the server's certificate, 64 hex digits
    ca_file: str | None = None
    timeout: int = DEFAULT_TIMEOUT

    @property
    def address(self) -> str:
        """``host:port`` for messages."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_address(address: str) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT`` or ``[IPv6]:PORT`` into (host, port); ValueError when malformed."""
    text = address.strip()
    if text.startswith("https://"):
        text = text[len("https://") :].split("/", 1)[0]
    if not text:
        raise ValueError("the endpoint address is empty")
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"malformed address {address!r}: unclosed '['")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"malformed address {address!r}")
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if not host or any(c.isspace() or c in "/?#@" for c in host):
        raise ValueError(f"malformed address {address!r}")
    if not port_text:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"malformed address {address!r}: bad port {port_text!r}")
    return host, int(port_text)


def normalize_fingerprint(value: str) -> str:
    """A SHA-256 fingerprint as 64 lower-case hex digits (colons and case accepted)."""
    text = value.strip().lower().replace(":", "")
    if text.startswith("sha256"):
        text = text[len("sha256") :].lstrip("=:")
    if not _FINGERPRINT.match(text):
        raise ValueError(
            f"invalid certificate fingerprint {value!r}: expected the SHA-256 "
            "(64 hex digits, colons allowed)"
        )
    return text


class CertificateMismatch(OSError):
    """The server's certificate is not the pinned one."""

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"certificate fingerprint {actual} is not the pinned {expected}")
        self.expected = expected
        self.actual = actual


class PinnedContext(ssl.SSLContext):
    """A TLS context that accepts exactly one certificate, named by its SHA-256.

    The check runs inside every handshake this context makes (pyvmomi opens several
    connections: version probe, SOAP pool), before a byte of the request is sent,
    so the password never reaches a server with another certificate.
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


def _ssl_context(settings: ConnectionSettings) -> ssl.SSLContext:
    if settings.fingerprint:
        return PinnedContext(normalize_fingerprint(settings.fingerprint))
    if not settings.verify_tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=settings.ca_file)


def format_fingerprint(hex_digest: str) -> str:
    """``AB:CD:...`` as vSphere and browsers show a certificate's fingerprint."""
    return ":".join(hex_digest[i : i + 2] for i in range(0, len(hex_digest), 2)).upper()


def _fault_text(exc: BaseException) -> str:
    msg = getattr(exc, "msg", None) or str(exc)
    return " ".join(str(msg).split())


def login(settings: ConnectionSettings) -> Any:
    """Log in; returns pyvmomi's ServiceInstance. Raises :class:`ConnectionFailed`."""
    try:
        return SmartConnect(
            host=settings.host,
            port=settings.port,
            user=settings.user,
            pwd=settings.password,
            sslContext=_ssl_context(settings),
            httpConnectionTimeout=settings.timeout,
        )
    except vim.fault.InvalidLogin:
        raise ConnectionFailed(
            f"{settings.address} refused the login of user {settings.user!r}: "
            "wrong user name or password"
        ) from None
    except CertificateMismatch as exc:
        raise ConnectionFailed(
            f"the TLS certificate of {settings.address} does not match the pinned fingerprint "
            f"(expected {format_fingerprint(exc.expected)}, the server presented "
            f"{format_fingerprint(exc.actual)}); refusing to send the password"
        ) from None
    except ssl.SSLCertVerificationError as exc:
        raise ConnectionFailed(
            f"the TLS certificate of {settings.address} is not trusted "
            f"({exc.verify_message or exc.reason}); pin its SHA-256 fingerprint "
            "(--fingerprint) rather than turning verification off"
        ) from None
    except ssl.SSLError as exc:
        raise ConnectionFailed(f"TLS handshake with {settings.address} failed: {exc}") from None
    except TimeoutError:
        raise ConnectionFailed(
            f"{settings.address} did not answer within {settings.timeout} s"
        ) from None
    except ConnectionRefusedError:
        raise ConnectionFailed(
            f"cannot reach {settings.address}: connection refused (is the address and port right?)"
        ) from None
    except socket.gaierror as exc:
        raise ConnectionFailed(f"cannot resolve {settings.host!r}: {exc.strerror or exc}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise ConnectionFailed(f"cannot reach {settings.address}: {exc}") from None
    except vmodl.MethodFault as exc:
        raise ConnectionFailed(
            f"{settings.address} refused the login: {_fault_text(exc)}"
        ) from None


@contextmanager
def session(settings: ConnectionSettings) -> Iterator[Any]:
    """A logged-in ServiceInstance, logged out again when the block ends."""
    si = login(settings)
    try:
        yield si
    except vmodl.MethodFault as exc:
        raise PluginError(f"{settings.address}: {_fault_text(exc)}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise ConnectionFailed(f"lost the connection to {settings.address}: {exc}") from None
    finally:
        # The block's own error matters more than a failed logout.
        with suppress(Exception):
            Disconnect(si)
