"""Logging in to a vCenter or ESXi over HTTPS, with the certificate checked.

TLS verification is on by default. For the self-signed certificate most vCenters
present, the operator pins its SHA-256 fingerprint instead of turning
verification off; a pinned fingerprint is checked on every connection, before
the password is sent.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

from tapir.appliance.plugin_api import ConnectionFailed, PluginError
from tapir.appliance.plugin_api.endpoints import (  # noqa: F401  (re-exported for the plugin)
    CertificateMismatch,
    PinnedContext,
    format_fingerprint,
    normalize_fingerprint,
    split_host_port,
    tls_context,
)

DEFAULT_PORT = 443
DEFAULT_TIMEOUT = 30


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
    """``HOST``, ``HOST:PORT``, ``[IPv6]:PORT`` or an ``https://`` URL into (host, port)."""
    text = address.strip()
    if text.startswith("https://"):
        text = text[len("https://") :].split("/", 1)[0]
    return split_host_port(text, DEFAULT_PORT)


def _ssl_context(settings: ConnectionSettings) -> ssl.SSLContext:
    return tls_context(
        verify_tls=settings.verify_tls, fingerprint=settings.fingerprint, ca_file=settings.ca_file
    )


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
