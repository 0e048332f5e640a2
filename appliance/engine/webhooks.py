"""Sending a notification as a JSON POST to a webhook, optionally signed with HMAC.

With a secret, the request carries ``X-Tapir-Signature: sha256=<hex>``, the
HMAC-SHA256 of the exact body under the secret, so the receiver can tell the
appliance's requests from forged ones. Any answer other than 2xx is a failure.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from .mailer import tls_context

#: Seconds to wait for the webhook before the delivery counts as failed.
TIMEOUT = 20.0
SIGNATURE_HEADER = "X-Tapir-Signature"
EVENT_HEADER = "X-Tapir-Event"


def check_url(url: object) -> str:
    """An http(s) URL with a host; ValueError otherwise."""
    text = url.strip() if isinstance(url, str) else ""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"invalid webhook URL {url!r} (want http:// or https://HOST/...)")
    return text


def signature(secret: str, body: bytes) -> str:
    """The signature header's value for ``body``."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def send(config: dict[str, Any], secret: str | None, payload: dict[str, Any]) -> None:
    """POST ``payload`` as JSON; raises OSError (URLError, HTTPError) when not accepted."""
    body = json.dumps(payload, sort_keys=True, default=str).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "tapir-notify/1",
        EVENT_HEADER: str(payload.get("event", "")),
    }
    if secret:
        headers[SIGNATURE_HEADER] = signature(secret, body)
    request = urllib.request.Request(config["url"], data=body, headers=headers, method="POST")
    timeout = float(config.get("timeout") or TIMEOUT)
    context = tls_context(config.get("ca_file")) if config["url"].startswith("https:") else None
    with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
        status = response.status
    if not 200 <= status < 300:
        raise OSError(f"webhook answered HTTP {status}")
