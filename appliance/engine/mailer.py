"""Sending a notification as an email over SMTP (smtplib), STARTTLS optional.

The target's configuration names the server (``host``, ``port``), the envelope
(``sender``, ``to``), whether to upgrade with STARTTLS (``starttls``) and the
login (``username``; the password is the target's sealed secret). ``ca_file``
trusts a private CA instead of the system's.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import Any

#: Seconds to wait for the SMTP server before the delivery counts as failed.
TIMEOUT = 20.0


def check_address(address: object) -> str:
    """An email address (``a@b.example`` or ``Name <a@b.example>``), stripped; ValueError
    for anything that is not one."""
    text = address.strip() if isinstance(address, str) else ""
    _, addr = parseaddr(text)
    local, at, domain = addr.rpartition("@")
    if not (at and local and domain) or " " in addr or "\n" in text:
        raise ValueError(f"invalid email address {address!r}")
    return text


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """A verifying TLS context, trusting ``ca_file`` when given."""
    return ssl.create_default_context(cafile=ca_file or None)


def build_message(config: dict[str, Any], subject: str, body: str) -> EmailMessage:
    """The email a notification becomes."""
    msg = EmailMessage()
    msg["From"] = config["sender"]
    msg["To"] = ", ".join(config["to"])
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain="tapir.invalid")
    msg.set_content(body)
    return msg


def send(config: dict[str, Any], password: str | None, subject: str, body: str) -> None:
    """Deliver one email; raises OSError or smtplib.SMTPException when it could not."""
    timeout = float(config.get("timeout") or TIMEOUT)
    with smtplib.SMTP(config["host"], int(config.get("port") or 25), timeout=timeout) as smtp:
        smtp.ehlo()
        if config.get("starttls"):
            smtp.starttls(context=tls_context(config.get("ca_file")))
            smtp.ehlo()
        if config.get("username"):
            if password is None:
                raise smtplib.SMTPException("the target has a username but no password stored")
            smtp.login(config["username"], password)
        smtp.send_message(build_message(config, subject, body))
