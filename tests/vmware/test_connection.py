"""Logging in to vcsim over HTTPS: credentials, certificate checks, unreachable hosts."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from vcsim_server import Vcsim

from tapir.appliance.plugin_api import ConnectionFailed
from tapir.plugins.vmware.connection import (
    ConnectionSettings,
    normalize_fingerprint,
    parse_address,
    session,
)


def settings(vcsim: Vcsim, **changes: object) -> ConnectionSettings:
    base: dict[str, object] = {
        "host": vcsim.host,
        "port": vcsim.port,
        "user": vcsim.username,
        "password": vcsim.password,
        "fingerprint": normalize_fingerprint(vcsim.fingerprint),
    }
    base.update(changes)
    return ConnectionSettings(**base)  # type: ignore[arg-type]


def test_pinned_fingerprint_logs_in_and_out(vcsim: Vcsim) -> None:
    with session(settings(vcsim)) as si:
        assert si.content.about.apiType == "VirtualCenter"
    calls = vcsim.soap_calls()
    assert calls.get("Login") == 1
    assert calls.get("Logout") == 1


def test_verification_against_a_ca_file(vcsim: Vcsim) -> None:
    with session(settings(vcsim, fingerprint=None, ca_file=str(vcsim.cert_file))) as si:
        assert si.content.about.apiType == "VirtualCenter"


def test_verification_is_on_by_default_and_refuses_a_self_signed_certificate(
    vcsim: Vcsim,
) -> None:
    with (
        pytest.raises(ConnectionFailed, match=r"certificate of .* is not trusted"),
        session(settings(vcsim, fingerprint=None)),
    ):
        pass
    assert vcsim.soap_calls().get("Login", 0) == 0


def test_turning_verification_off_still_works(vcsim: Vcsim) -> None:
    with session(settings(vcsim, fingerprint=None, verify_tls=False)) as si:
        assert si.content.about.apiType == "VirtualCenter"


def test_wrong_fingerprint_is_refused_before_the_password_is_sent(vcsim: Vcsim) -> None:
    wrong = "ab" * 32
    with (
        pytest.raises(ConnectionFailed, match="does not match the pinned fingerprint") as info,
        session(settings(vcsim, fingerprint=wrong)),
    ):
        pass
    assert vcsim.fingerprint in str(info.value)  # the operator sees what the server presented
    assert vcsim.soap_calls().get("Login", 0) == 0


def test_a_pin_also_wins_over_verify_tls_off(vcsim: Vcsim) -> None:
    with (
        pytest.raises(ConnectionFailed, match="pinned fingerprint"),
        session(settings(vcsim, fingerprint="cd" * 32, verify_tls=False)),
    ):
        pass


@pytest.mark.parametrize(
    ("user", "password"), [("tapir", "wrong"), ("nobody", "secret"), ("tapir", "")]
)
def test_bad_credentials(vcsim: Vcsim, user: str, password: str) -> None:
    with (
        pytest.raises(ConnectionFailed, match="wrong user name or password"),
        session(settings(vcsim, user=user, password=password)),
    ):
        pass


def test_unreachable_address_on_a_closed_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # The port is free again and nothing listens on it.
    closed = ConnectionSettings("127.0.0.1", port, "tapir", "secret", verify_tls=False)
    with (
        pytest.raises(ConnectionFailed, match=f"cannot reach 127.0.0.1:{port}: connection refused"),
        session(closed),
    ):
        pass


def test_server_gone_mid_session_is_a_connection_failure(vcsim: Vcsim) -> None:
    with (
        pytest.raises(ConnectionFailed, match=r"lost the connection|cannot reach"),
        session(settings(vcsim)) as si,
    ):
        vcsim.stop()
        si.CurrentTime()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("vc.example.org", ("vc.example.org", 443)),
        ("10.0.0.5:8443", ("10.0.0.5", 8443)),
        ("[fe80::1]:443", ("fe80::1", 443)),
        ("fe80::1", ("fe80::1", 443)),
        ("https://vc.example.org:9443/sdk", ("vc.example.org", 9443)),
    ],
)
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["", "host:0", "host:70000", "host:x", "[::1", "a b", "u@h"])
def test_parse_address_refuses_bad_input(text: str) -> None:
    with pytest.raises(ValueError):
        parse_address(text)


def test_fingerprint_forms(vcsim: Vcsim, tmp_path: Path) -> None:
    plain = normalize_fingerprint(vcsim.fingerprint)
    assert len(plain) == 64 and plain == plain.lower()
    assert normalize_fingerprint(plain.upper()) == plain
    for bad in ["", "abc", "zz" * 32, "ab" * 20]:
        with pytest.raises(ValueError, match="SHA-256"):
            normalize_fingerprint(bad)
