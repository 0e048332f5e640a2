"""Notifications: targets (email, webhook), the events they want, and delivering them.

A target subscribes to events: ``failure``, ``warning`` and ``success`` (how a run
ended) and ``operator-request`` (a plugin needs a person, e.g. a cartridge to be put
into the library). Every notification also goes to the ``tapir_notify`` hook, so a
plugin can deliver it elsewhere.

Delivery never fails what caused it: an unreachable mail server or webhook is
logged, recorded on the target (``last_error``) and the run goes on. Passwords and
signing secrets are sealed with the master key like every credential.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select

from .. import security
from ..catalog.models import NotificationTarget, Secret, utcnow
from . import mailer, webhooks
from .assets import jsonable
from .pools import validate_name

if TYPE_CHECKING:
    from .context import EngineContext

log = logging.getLogger(__name__)

EVENTS = ("failure", "warning", "success", "operator-request")
#: What a new target gets when no events are named.
DEFAULT_EVENTS = ("failure", "operator-request")
KINDS = ("email", "webhook")
_EMAIL_KEYS = {"host", "port", "starttls", "username", "sender", "to", "ca_file", "timeout"}
_WEBHOOK_KEYS = {"url", "ca_file", "timeout"}


@dataclass(frozen=True)
class Notification:
    """One message: its event, a one-line subject, a plain-text body and JSON details."""

    event: str
    subject: str
    body: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Delivery:
    """How delivering one notification to one target went (``error`` None: delivered)."""

    target: str
    error: str | None


def secret_name(target: str) -> str:
    """The sealed secret of a target (SMTP password or webhook signing secret)."""
    return f"notification.{target}"


def check_events(events: list[str] | tuple[str, ...] | None) -> list[str]:
    """The events, deduplicated in :data:`EVENTS` order; ValueError for an unknown one."""
    chosen = list(events) if events else list(DEFAULT_EVENTS)
    unknown = sorted(set(chosen) - set(EVENTS))
    if unknown:
        raise ValueError(f"unknown event {', '.join(unknown)} (choose from {', '.join(EVENTS)})")
    return [e for e in EVENTS if e in chosen]


def check_config(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """A target's configuration, checked and normalised; ValueError naming the problem."""
    if kind not in KINDS:
        raise ValueError(f"unknown notification kind {kind!r} (choose from {', '.join(KINDS)})")
    allowed = _EMAIL_KEYS if kind == "email" else _WEBHOOK_KEYS
    unknown = sorted(k for k, v in config.items() if k not in allowed and v is not None)
    if unknown:
        raise ValueError(f"a {kind} target has no setting {', '.join(unknown)}")
    out: dict[str, Any] = {k: v for k, v in config.items() if v is not None and v != ""}
    if "timeout" in out:
        out["timeout"] = _number(out["timeout"], "timeout", 1, 600)
    if kind == "webhook":
        if "url" not in out:
            raise ValueError("a webhook target needs a url")
        out["url"] = webhooks.check_url(out["url"])
        return out
    if not out.get("host"):
        raise ValueError("an email target needs the SMTP server's host")
    out["port"] = int(_number(out.get("port", 25), "port", 1, 65535))
    out["starttls"] = bool(out.get("starttls", False))
    to = out.get("to")
    to_list = [to] if isinstance(to, str) else list(to or [])
    to_list = [a for t in to_list for a in str(t).split(",") if a.strip()]
    if not to_list:
        raise ValueError("an email target needs at least one recipient (to)")
    out["to"] = [mailer.check_address(a) for a in to_list]
    out["sender"] = mailer.check_address(out.get("sender") or f"tapir@{socket.getfqdn()}")
    return out


def _number(value: Any, name: str, lo: float, hi: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, not {value!r}") from None
    if not lo <= number <= hi:
        raise ValueError(f"{name} must be between {lo:g} and {hi:g}")
    return number


def add_target(
    env: EngineContext,
    name: str,
    kind: str,
    config: dict[str, Any],
    *,
    events: list[str] | None = None,
    secret: str | None = None,
) -> NotificationTarget:
    """Create a target; ``secret`` (SMTP password, webhook secret) is sealed, never stored
    plain. Nothing is saved when any field is wrong."""
    validate_name("notification target", name)
    chosen = check_events(events)
    checked = check_config(kind, config)
    if kind == "email" and checked.get("username") and not secret:
        raise ValueError("an SMTP username needs a password (the secret)")
    key = env.master_key() if secret else None
    with env.catalog.session() as s:
        if s.scalar(select(NotificationTarget.id).where(NotificationTarget.name == name)):
            raise ValueError(f"a notification target named {name!r} already exists")
        target = NotificationTarget(
            name=name,
            kind=kind,
            events=chosen,
            config=jsonable(checked),
            secret_name=secret_name(name) if secret else None,
            enabled=True,
        )
        s.add(target)
        if secret and key is not None:
            security.store_secret(s, key, secret_name(name), secret)
    return get_target(env, name)


def get_target(env: EngineContext, name: str) -> NotificationTarget:
    """One target; KeyError when unknown."""
    with env.catalog.session() as s:
        target = s.scalar(select(NotificationTarget).where(NotificationTarget.name == name))
        if target is None:
            raise KeyError(f"no notification target named {name!r}")
        return target


def list_targets(env: EngineContext) -> list[NotificationTarget]:
    """Every target, by name."""
    with env.catalog.session() as s:
        return list(s.scalars(select(NotificationTarget).order_by(NotificationTarget.name)))


def remove_target(env: EngineContext, name: str) -> None:
    """Delete a target and its sealed secret; KeyError when unknown."""
    with env.catalog.session() as s:
        target = s.scalar(select(NotificationTarget).where(NotificationTarget.name == name))
        if target is None:
            raise KeyError(f"no notification target named {name!r}")
        if target.secret_name:
            s.execute(delete(Secret).where(Secret.name == target.secret_name))
        s.delete(target)


def deliver(env: EngineContext, target: NotificationTarget, note: Notification) -> None:
    """Send ``note`` to one target now; raises when it could not be delivered."""
    secret = env.read_secret(target.secret_name) if target.secret_name else None
    if target.kind == "email":
        mailer.send(target.config, secret, note.subject, note.body)
    elif target.kind == "webhook":
        payload = {
            "event": note.event,
            "subject": note.subject,
            "body": note.body,
            "details": note.details,
            "appliance": socket.gethostname(),
            "sent_at": utcnow().isoformat(),
        }
        webhooks.send(target.config, secret, payload)
    else:
        raise ValueError(f"unknown notification kind {target.kind!r}")


def _record(env: EngineContext, target_id: int, error: str | None) -> None:
    with env.catalog.session() as s:
        row = s.get(NotificationTarget, target_id)
        if row is None:
            return
        row.last_error = error
        if error is None:
            row.last_sent_at = utcnow()


def _attempt(env: EngineContext, target: NotificationTarget, note: Notification) -> Delivery:
    try:
        deliver(env, target, note)
        error = None
    except Exception as exc:  # whatever went wrong, the caller goes on
        error = f"{type(exc).__name__}: {exc}" if not str(exc) else str(exc)
        log.warning("notification %r to target %s failed: %s", note.subject, target.name, error)
    try:
        _record(env, target.id, error)
    except Exception as exc:
        log.warning("could not record the delivery to target %s: %s", target.name, exc)
    return Delivery(target.name, error)


def notify(env: EngineContext, note: Notification) -> list[Delivery]:
    """Hand ``note`` to the ``tapir_notify`` hook and every enabled target that wants its
    event. Never raises: failures are logged and returned."""
    if note.event not in EVENTS:
        raise ValueError(f"unknown notification event {note.event!r}")
    env.registry.call_event(
        "tapir_notify",
        event=note.event,
        subject=note.subject,
        body=note.body,
        details=dict(note.details),
    )
    try:
        targets = [t for t in list_targets(env) if t.enabled and note.event in (t.events or [])]
    except Exception as exc:  # a catalog hiccup must not fail the run that notifies
        log.warning("notification %r not sent: cannot read the targets: %s", note.subject, exc)
        return []
    return [_attempt(env, t, note) for t in targets]


def send_test(env: EngineContext, name: str) -> Delivery:
    """Send a test message to one target whatever its events; the outcome is returned."""
    target = get_target(env, name)
    host = socket.gethostname()
    note = Notification(
        event="test",
        subject=f"[tapir] test notification from {host}",
        body=f"This is a test of the notification target {name} on the appliance {host}.",
        details={"test": True, "target": name},
    )
    return _attempt(env, target, note)
