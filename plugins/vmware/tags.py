"""vSphere tags, which live in vCenter's vAPI REST service rather than in the SOAP API.

Discovery asks for them in a fixed number of calls whatever the size of the farm:
log in, list the tags, read each tag and category once, then one
``list-attached-objects-on-tags`` for all tags together. A standalone ESXi host
has no tagging service; there (and whenever the service cannot be reached) the
inventory simply carries no tags and discovery says why in the log.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import urllib.parse
from collections import defaultdict
from typing import Any

from tapir.appliance.plugin_api import PluginError

from .connection import ConnectionSettings, _ssl_context

_REST = "/rest/com/vmware/cis"


class TagServiceUnavailable(PluginError):
    """The endpoint offers no vAPI tagging service (a standalone ESXi host, or it is down)."""


class _Rest:
    """One authenticated vAPI REST session over the endpoint's own TLS settings."""

    def __init__(self, settings: ConnectionSettings) -> None:
        self._conn = http.client.HTTPSConnection(
            settings.host,
            settings.port,
            timeout=settings.timeout,
            context=_ssl_context(settings),
        )
        basic = base64.b64encode(f"{settings.user}:{settings.password}".encode()).decode()
        status, body = self._call("POST", f"{_REST}/session", {"Authorization": f"Basic {basic}"})
        if status == 404:
            raise TagServiceUnavailable("the endpoint has no vAPI tagging service (an ESXi host?)")
        if status != 200:
            raise TagServiceUnavailable(f"the vAPI login was refused (HTTP {status})")
        self._session = str(body["value"])

    def _call(
        self, method: str, path: str, headers: dict[str, str], payload: Any = None
    ) -> tuple[int, Any]:
        data = json.dumps(payload).encode() if payload is not None else None
        if data is not None:
            headers = {**headers, "Content-Type": "application/json"}
        try:
            self._conn.request(method, path, body=data, headers=headers)
            response = self._conn.getresponse()
            raw = response.read()
        except OSError as exc:
            raise TagServiceUnavailable(f"the vAPI service cannot be reached: {exc}") from None
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        return response.status, body

    def get(self, path: str, payload: Any = None, method: str = "GET") -> Any:
        """The ``value`` of a successful call; TagServiceUnavailable otherwise."""
        status, body = self._call(
            method, f"{_REST}{path}", {"vmware-api-session-id": self._session}, payload
        )
        if status != 200 or not isinstance(body, dict) or "value" not in body:
            raise TagServiceUnavailable(f"vAPI {method} {path} answered HTTP {status}")
        return body["value"]

    def close(self) -> None:
        # A logout that fails changes nothing: the session expires on its own.
        with contextlib.suppress(TagServiceUnavailable):
            self._call("DELETE", f"{_REST}/session", {"vmware-api-session-id": self._session})
        self._conn.close()


def vm_tags(settings: ConnectionSettings) -> dict[str, list[str]]:
    """VM moref -> its tags, each as ``NAME`` and as ``CATEGORY:NAME`` (sorted).

    Raises :class:`TagServiceUnavailable` when the endpoint has no usable tagging
    service; the caller decides whether that matters.
    """
    rest = _Rest(settings)
    try:
        tag_ids = [str(t) for t in rest.get("/tagging/tag") or []]
        if not tag_ids:
            return {}
        names: dict[str, tuple[str, str]] = {}
        categories: dict[str, str] = {}
        for tag_id in tag_ids:
            info = rest.get(f"/tagging/tag/id:{urllib.parse.quote(tag_id, safe='')}")
            category_id = str(info.get("category_id", ""))
            if category_id not in categories:
                quoted = urllib.parse.quote(category_id, safe="")
                categories[category_id] = str(rest.get(f"/tagging/category/id:{quoted}")["name"])
            names[tag_id] = (categories[category_id], str(info["name"]))
        attached = rest.get(
            "/tagging/tag-association?~action=list-attached-objects-on-tags",
            {"tag_ids": tag_ids},
            method="POST",
        )
    finally:
        rest.close()
    found: dict[str, set[str]] = defaultdict(set)
    for entry in attached or []:
        category, name = names.get(str(entry.get("tag_id")), ("", ""))
        if not name:
            continue
        for obj in entry.get("object_ids") or []:
            if obj.get("type") == "VirtualMachine":
                found[str(obj["id"])].update((name, f"{category}:{name}"))
    return {moref: sorted(values) for moref, values in found.items()}
