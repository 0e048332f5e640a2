"""Notifications: email over SMTP with STARTTLS and AUTH, signed webhooks, events per
target, the tapir_notify hook, operator requests, and delivery failures that never fail
a run."""

from __future__ import annotations

import hashlib
import hmac
import socket
from pathlib import Path

import pytest
from sqlalchemy import select, text

from tapir.appliance.catalog.models import NotificationTarget, RunState, Secret
from tapir.appliance.engine.service import Appliance

from .conftest import NotifyRecorder
from .servers import Hook, Mailbox


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _email(app: Appliance, name: str, port: int, ca: Path | None, **kw: object) -> None:
    config = {
        "host": "127.0.0.1",
        "port": port,
        "starttls": ca is not None,
        "ca_file": str(ca) if ca else None,
        "username": kw.pop("username", "tapir" if ca else None),
        "sender": "tapir@appliance.example",
        "to": ["ops@example.com", "Backup Team <backup@example.com>"],
    }
    app.add_notification_target(name, "email", config, **kw)  # type: ignore[arg-type]


def test_a_failed_run_is_mailed_over_starttls_with_a_sealed_password(
    app: Appliance, tmp_path: Path, smtp: tuple[int, Mailbox, Path], recorder: NotifyRecorder
) -> None:
    port, box, ca = smtp
    _email(app, "ops", port, ca, events=["failure"], secret=box.password)
    app.create_job("broken", "files", "default", options={"paths": [str(tmp_path / "none")]})
    run = app.run_job("broken")
    assert run.state == RunState.FAILED

    (msg,) = box.wait_for(1)
    assert msg["Subject"] == f"[tapir] backup of job broken failed (run {run.id})"
    assert msg["To"] == "ops@example.com, Backup Team <backup@example.com>"
    assert "none of the job's paths could be read" in msg.get_payload()
    assert box.logins == ["tapir"]
    # The tapir_notify hook got it too, with details a plugin can use.
    (call,) = [c for c in recorder.calls if c["event"] == "failure"]
    assert call["details"]["run"] == run.id and call["details"]["job"] == "broken"
    # The password is sealed: neither the target row nor the secrets table holds it plain.
    with app.catalog.session() as s:
        target = s.scalars(select(NotificationTarget)).one()
        assert target.secret_name == "notification.ops" and target.last_error is None
        assert target.last_sent_at is not None
        rows = s.execute(text("SELECT * FROM notification_targets")).all()
        assert box.password not in repr(rows)
        sealed = s.scalars(select(Secret.sealed).where(Secret.name == "notification.ops")).one()
        assert box.password.encode() not in sealed
    assert app.read_secret("notification.ops") == box.password


def test_targets_get_only_the_events_they_asked_for(
    lite: Appliance, source: Path, webhook: tuple[str, Hook], smtp: tuple[int, Mailbox, Path]
) -> None:
    url, hook = webhook
    port, box, ca = smtp
    lite.add_notification_target("hook", "webhook", {"url": url}, events=["success", "warning"])
    _email(lite, "mail", port, ca, secret=box.password)  # default: failure, operator-request
    lite.create_job("ok", "files", "default", options={"paths": [str(source)]})
    run = lite.run_job("ok")
    assert run.state == RunState.SUCCEEDED
    assert [lite_hook["event"] for lite_hook in map(hook.json, range(len(hook.requests)))] == [
        "success"
    ]
    payload = hook.json()
    assert payload["details"]["run"] == run.id and payload["details"]["state"] == "succeeded"
    assert payload["subject"] == f"[tapir] backup of job ok succeeded (run {run.id})"
    assert "x-tapir-signature" not in hook.requests[0][0]  # no secret, no signature
    assert box.messages == []


def test_webhooks_are_signed_with_hmac(lite: Appliance, webhook: tuple[str, Hook]) -> None:
    url, hook = webhook
    lite.add_notification_target("signed", "webhook", {"url": url}, secret="hook-key")
    assert lite.test_notification_target("signed").error is None
    headers, body = hook.requests[0]
    expected = hmac.new(b"hook-key", body, hashlib.sha256).hexdigest()
    assert headers["x-tapir-signature"] == f"sha256={expected}"
    assert headers["x-tapir-event"] == "test"
    assert headers["content-type"] == "application/json"


def test_operator_requests_reach_the_run_log_targets_and_hook(
    lite: Appliance, source: Path, webhook: tuple[str, Hook], recorder: NotifyRecorder
) -> None:
    url, hook = webhook
    lite.add_notification_target("desk", "webhook", {"url": url}, events=["operator-request"])
    lite.create_job("j", "files", "default", options={"paths": [str(source)]})
    run_id = lite.queue_run("j")
    # The context a plugin gets during that run (here the tape media plugin's).
    ctx = lite.env.plugin_context("tape", run_id=run_id)
    ctx.request_operator("insert cartridge TAPE07", "cartridge TAPE07 is in the vault")
    payload = hook.json()
    assert payload["event"] == "operator-request"
    assert payload["subject"] == "[tapir] operator needed: insert cartridge TAPE07"
    assert payload["details"] == {"plugin": "tape", "run": run_id}
    assert ("WARNING", "operator needed: insert cartridge TAPE07") in [
        (lvl, m) for _, lvl, m in lite.run_log(run_id)
    ]
    assert [c["event"] for c in recorder.calls] == ["operator-request"]


def test_delivery_failures_are_logged_and_never_fail_the_run(
    lite: Appliance, source: Path, webhook: tuple[str, Hook]
) -> None:
    url, hook = webhook
    hook.status = 500
    lite.add_notification_target(
        "down",
        "email",
        {"host": "127.0.0.1", "port": _free_port(), "to": ["ops@example.com"], "timeout": 5},
        events=["success"],
    )
    lite.add_notification_target("broken-hook", "webhook", {"url": url}, events=["success"])
    lite.create_job("j", "files", "default", options={"paths": [str(source)]})
    run = lite.run_job("j")
    assert run.state == RunState.SUCCEEDED
    log = [m for _, _, m in lite.run_log(run.id)]
    assert any(m.startswith("notification to down failed:") for m in log)
    assert any("notification to broken-hook failed:" in m and "500" in m for m in log)
    errors = {t.name: t.last_error for t in lite.notification_targets()}
    assert errors["down"] and "500" in errors["broken-hook"]
    # A test send reports the failure instead of raising.
    assert "refused" in (lite.test_notification_target("down").error or "").lower()


def test_a_wrong_smtp_password_is_a_delivery_error(
    lite: Appliance, smtp: tuple[int, Mailbox, Path]
) -> None:
    port, box, ca = smtp
    _email(lite, "ops", port, ca, secret="wrong")
    delivery = lite.test_notification_target("ops")
    assert delivery.error and "535" in delivery.error
    assert box.messages == []


@pytest.mark.parametrize(
    ("kind", "config", "kw", "message"),
    [
        ("pager", {"url": "http://x"}, {}, "unknown notification kind 'pager'"),
        ("webhook", {"url": "ftp://x/y"}, {}, "invalid webhook URL"),
        ("webhook", {}, {}, "needs a url"),
        ("webhook", {"url": "http://x", "to": "a@b.c"}, {}, "has no setting to"),
        ("webhook", {"url": "http://x"}, {"events": ["failure", "boom"]}, "unknown event boom"),
        ("email", {"host": "h", "to": ["not an address"]}, {}, "invalid email address"),
        ("email", {"host": "h"}, {}, "at least one recipient"),
        ("email", {"to": ["a@b.example"]}, {}, "needs the SMTP server's host"),
        ("email", {"host": "h", "to": ["a@b.example"], "port": 0}, {}, "port must be between"),
        ("email", {"host": "h", "to": ["a@b.example"], "username": "u"}, {}, "needs a password"),
    ],
)
def test_bad_targets_are_refused_and_nothing_is_saved(
    lite: Appliance, kind: str, config: dict, kw: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        lite.add_notification_target("t", kind, config, **kw)
    assert lite.notification_targets() == []


def test_names_are_unique_and_removal_deletes_the_secret(lite: Appliance) -> None:
    lite.add_notification_target("h", "webhook", {"url": "http://127.0.0.1:9/x"}, secret="k")
    with pytest.raises(ValueError, match="already exists"):
        lite.add_notification_target("h", "webhook", {"url": "http://127.0.0.1:9/y"})
    with pytest.raises(ValueError, match="invalid notification target name"):
        lite.add_notification_target("../h", "webhook", {"url": "http://127.0.0.1:9/y"})
    lite.remove_notification_target("h")
    with pytest.raises(KeyError):
        lite.read_secret("notification.h")
    with pytest.raises(KeyError, match="no notification target named 'h'"):
        lite.remove_notification_target("h")
    assert [e.action for e in lite.audit_events(2)] == ["notification.remove", "notification.add"]
