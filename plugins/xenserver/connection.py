"""Logging in to a XenServer / XCP-ng pool master through the XenAPI SDK, TLS checked.

TLS verification is on by default. XenServer hosts present self-signed
certificates, so the operator pins the master's SHA-256 fingerprint instead of
turning verification off; a pinned fingerprint is checked inside every
handshake, before the password is sent. A login on a pool member is answered
``HOST_IS_SLAVE`` with the master's address: the login is repeated there (same
port, same TLS settings), so a master change in the pool needs no operator.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import xmlrpc.client
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from typing import Any

import XenAPI

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
#: How many HOST_IS_SLAVE answers are followed before giving up (a pool in transition).
MAX_REDIRECTS = 3
ORIGINATOR = "tapir"


@dataclass(frozen=True)
class ConnectionSettings:
    """Where and how to log in; built from an endpoint's address and options."""

    host: str
    port: int
    user: str
    password: str
    scheme: str = "https"
    verify_tls: bool = True
    fingerprint: str | None = None  # SHA-256 of the server certificate, 64 hex digits
    ca_file: str | None = None
    timeout: int = DEFAULT_TIMEOUT

    @property
    def address(self) -> str:
        """``host:port`` for messages."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.address}/"


def parse_address(address: str) -> tuple[str, str, int]:
    """``[http[s]://]HOST[:PORT]`` or ``[IPv6]:PORT`` into (scheme, host, port)."""
    text = address.strip()
    scheme = "https"
    for prefix in ("https://", "http://"):
        if text.startswith(prefix):
            scheme = prefix[:-3]
            text = text[len(prefix) :].split("/", 1)[0]
    host, port = split_host_port(text, DEFAULT_PORT if scheme == "https" else 80)
    return scheme, host, port


def ssl_context(settings: ConnectionSettings) -> ssl.SSLContext | None:
    """The TLS context of every connection to the pool (None over plain HTTP)."""
    if settings.scheme != "https":
        return None
    return tls_context(
        verify_tls=settings.verify_tls, fingerprint=settings.fingerprint, ca_file=settings.ca_file
    )


class _TimeoutTransport(xmlrpc.client.SafeTransport):
    """XML-RPC over HTTPS or HTTP with our TLS context and a socket timeout."""

    def __init__(self, context: ssl.SSLContext | None, timeout: int) -> None:
        super().__init__(context=context)
        self._timeout = timeout
        self._plain = context is None

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        if self._connection and host == self._connection[0]:
            return self._connection[1]
        chost, self._extra_headers, _ = self.get_host_info(host)
        conn: http.client.HTTPConnection
        if self._plain:
            conn = http.client.HTTPConnection(chost, timeout=self._timeout)
        else:
            conn = http.client.HTTPSConnection(chost, timeout=self._timeout, context=self.context)
        self._connection = host, conn
        return conn


def open_connection(settings: ConnectionSettings) -> http.client.HTTPConnection:
    """A raw HTTP(S) connection to the host, for the VDI transfer handlers."""
    context = ssl_context(settings)
    if context is None:
        return http.client.HTTPConnection(settings.host, settings.port, timeout=settings.timeout)
    return http.client.HTTPSConnection(
        settings.host, settings.port, timeout=settings.timeout, context=context
    )


def failure_code(exc: XenAPI.Failure) -> str:
    """The error code of a XAPI failure (``HOST_IS_SLAVE``...)."""
    details = exc.details if isinstance(exc.details, list) else [exc.details]
    return str(details[0]) if details else ""


def failure_text(exc: XenAPI.Failure) -> str:
    details = exc.details if isinstance(exc.details, list) else [exc.details]
    return " ".join(str(d) for d in details)


@dataclass
class Connection:
    """A logged-in XenAPI session on the pool master."""

    session: Any  # XenAPI.Session
    settings: ConnectionSettings  # of the master actually reached

    @property
    def api(self) -> Any:
        """``session.xenapi``: ``api.VM.get_all_records()`` and so on."""
        return self.session.xenapi

    @property
    def ref(self) -> str:
        """The session reference (the HTTP handlers take it as ``session_id``)."""
        return str(self.session._session)


def _login_once(settings: ConnectionSettings) -> Any:
    transport = _TimeoutTransport(ssl_context(settings), settings.timeout)
    session = XenAPI.Session(settings.url, transport=transport)
    session.login_with_password(settings.user, settings.password, "1.0", ORIGINATOR)
    return session


def login(settings: ConnectionSettings) -> Connection:
    """Log in on the pool master, following HOST_IS_SLAVE. Raises :class:`ConnectionFailed`."""
    current = settings
    for _ in range(MAX_REDIRECTS + 1):
        try:
            return Connection(_login_once(current), current)
        except XenAPI.Failure as exc:
            code = failure_code(exc)
            if code == "HOST_IS_SLAVE" and len(exc.details) > 1:
                master = str(exc.details[1])
                # The master listens on the same port as its members (443 in a real pool).
                current = replace(current, host=master.strip("[]"))
                continue
            if code == "SESSION_AUTHENTICATION_FAILED":
                raise ConnectionFailed(
                    f"{current.address} refused the login of user {settings.user!r}: "
                    "wrong user name or password"
                ) from None
            raise ConnectionFailed(
                f"{current.address} refused the login: {failure_text(exc)}"
            ) from None
        except CertificateMismatch as exc:
            raise ConnectionFailed(
                f"the TLS certificate of {current.address} does not match the pinned "
                f"fingerprint (expected {format_fingerprint(exc.expected)}, the server "
                f"presented {format_fingerprint(exc.actual)}); refusing to send the password"
            ) from None
        except ssl.SSLCertVerificationError as exc:
            raise ConnectionFailed(
                f"the TLS certificate of {current.address} is not trusted "
                f"({exc.verify_message or exc.reason}); pin its SHA-256 fingerprint "
                "(--fingerprint) rather than turning verification off"
            ) from None
        except ssl.SSLError as exc:
            raise ConnectionFailed(f"TLS handshake with {current.address} failed: {exc}") from None
        except TimeoutError:
            raise ConnectionFailed(
                f"{current.address} did not answer within {current.timeout} s"
            ) from None
        except ConnectionRefusedError:
            raise ConnectionFailed(
                f"cannot reach {current.address}: connection refused "
                "(is the address and port right?)"
            ) from None
        except socket.gaierror as exc:
            raise ConnectionFailed(
                f"cannot resolve {current.host!r}: {exc.strerror or exc}"
            ) from None
        except (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError) as exc:
            raise ConnectionFailed(f"cannot reach {current.address}: {exc}") from None
    raise ConnectionFailed(
        f"{settings.address}: still redirected to another pool master after "
        f"{MAX_REDIRECTS} attempts (is the pool changing its master?)"
    )


@contextmanager
def session(settings: ConnectionSettings) -> Iterator[Connection]:
    """A logged-in connection, logged out again when the block ends."""
    conn = login(settings)
    try:
        yield conn
    except XenAPI.Failure as exc:
        raise PluginError(f"{conn.settings.address}: {failure_text(exc)}") from None
    except (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError) as exc:
        raise ConnectionFailed(f"lost the connection to {conn.settings.address}: {exc}") from None
    finally:
        # The block's own error matters more than a failed logout.
        with suppress(Exception):
            conn.session.xenapi.session.logout()
