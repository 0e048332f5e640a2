"""Logging in to the pool through the XenAPI SDK: credentials, TLS, pool master redirect."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tapir.appliance.plugin_api import ConnectionFailed
from tapir.plugins.xenserver.connection import (
    ConnectionSettings,
    normalize_fingerprint,
    parse_address,
    session,
)

from .conftest import PASSWORD, USER
from .xapi_server import RunningXapi, start_xapi


def settings(server: RunningXapi, **changes: object) -> ConnectionSettings:
    base: dict[str, object] = {
        "host": "127.0.0.1",
        "port": server.port,
        "user": USER,
        "password": PASSWORD,
        "fingerprint": normalize_fingerprint(server.fingerprint) if server.fingerprint else None,
    }
    base.update(changes)
    return ConnectionSettings(**base)  # type: ignore[arg-type]


def test_pinned_fingerprint_logs_in_and_out(xapi: RunningXapi) -> None:
    with session(settings(xapi)) as conn:
        assert conn.api.pool.get_all() == [xapi.xapi.pool]
        assert conn.ref in xapi.xapi.db["session"]
    assert xapi.xapi.calls["session.login_with_password"] == 1
    assert xapi.xapi.calls["session.logout"] == 1
    assert xapi.xapi.db["session"] == {}


def test_wrong_password_is_session_authentication_failed(xapi: RunningXapi) -> None:
    with (
        pytest.raises(ConnectionFailed, match="wrong user name or password"),
        session(settings(xapi, password="nope")),
    ):
        pass
    assert xapi.xapi.calls["session.login_with_password"] == 1


def test_a_pool_member_redirects_to_the_master(xapi: RunningXapi) -> None:
    # "localhost" reaches the same socket, but the server plays a pool member there.
    with session(settings(xapi, host="localhost")) as conn:
        assert conn.settings.host == "127.0.0.1"
        assert conn.api.pool.get_master(xapi.xapi.pool) == xapi.xapi.master
    assert xapi.xapi.calls["session.login_with_password"] == 2


def test_a_pool_member_with_a_wrong_password_fails_at_the_master(xapi: RunningXapi) -> None:
    with (
        pytest.raises(ConnectionFailed, match=r"127\.0\.0\.1:\d+ refused the login.*wrong"),
        session(settings(xapi, host="localhost", password="nope")),
    ):
        pass


def test_endless_redirects_give_up(xapi: RunningXapi) -> None:
    xapi.xapi.slave_names.add("127.0.0.1")
    with pytest.raises(ConnectionFailed, match="still redirected"), session(settings(xapi)):
        pass


def test_verification_against_a_ca_file(xapi: RunningXapi) -> None:
    with session(settings(xapi, fingerprint=None, ca_file=str(xapi.ca_file))) as conn:
        assert conn.api.host.get_all()


def test_verification_is_on_by_default_and_refuses_a_self_signed_certificate(
    xapi: RunningXapi,
) -> None:
    with (
        pytest.raises(ConnectionFailed, match=r"certificate of .* is not trusted"),
        session(settings(xapi, fingerprint=None)),
    ):
        pass
    assert xapi.xapi.calls["session.login_with_password"] == 0


def test_a_wrong_fingerprint_never_sends_the_password(xapi: RunningXapi) -> None:
    with (
        pytest.raises(ConnectionFailed, match="does not match the pinned fingerprint"),
        session(settings(xapi, fingerprint="ab" * 32)),
    ):
        pass
    assert xapi.xapi.calls["session.login_with_password"] == 0


def test_plain_http_endpoint(tmp_path: Path) -> None:
    server = start_xapi(tmp_path / "plain", USER, PASSWORD, tls=False)
    try:
        with session(settings(server, scheme="http", fingerprint=None)) as conn:
            assert conn.api.host.get_all()
    finally:
        server.stop()


def test_a_closed_port_is_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bad = ConnectionSettings("127.0.0.1", port, USER, PASSWORD, verify_tls=False)
    with pytest.raises(ConnectionFailed, match="connection refused"), session(bad):
        pass


def test_an_expired_session_is_logged_in_again_by_the_sdk(xapi: RunningXapi) -> None:
    with session(settings(xapi)) as conn:
        xapi.xapi.db["session"].clear()  # XAPI forgets sessions (restart, timeout)
        assert conn.api.host.get_all()
    assert xapi.xapi.calls["session.login_with_password"] == 2


def test_parse_address() -> None:
    assert parse_address("xs1") == ("https", "xs1", 443)
    assert parse_address("http://xs1:8080/") == ("http", "xs1", 8080)
    assert parse_address("[::1]:444") == ("https", "::1", 444)
    with pytest.raises(ValueError, match="bad port"):
        parse_address("xs1:http")
