"""Watching the pool with ``event.from``: which VMs appeared, changed or went away.

``event.from(classes, token, timeout)`` blocks until something of the named
classes changes (or the timeout passes) and answers the events with a new
token; the first call, with an empty token, answers every current object. A
watcher keeps calling it with the last token and runs a discovery when a VM
event arrives, so a new VM is registered within seconds; the periodic full
discovery stays as the safety net (an event lost with a connection).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .connection import Connection
from .inventory import is_protectable


@dataclass
class VmEvents:
    """What one ``event.from`` call told about VMs."""

    token: str
    added: list[str] = field(default_factory=list)  # VM uuids
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # VM references (the record is gone)

    @property
    def any(self) -> bool:
        return bool(self.added or self.changed or self.removed)


def vm_events(conn: Connection, token: str = "", timeout: float = 30.0) -> VmEvents:
    """Wait up to ``timeout`` seconds for VM events after ``token`` ("" = the current state)."""
    answer: dict[str, Any] = conn.api.event.__getattr__("from")(["vm"], token, float(timeout))
    out = VmEvents(token=str(answer["token"]))
    for event in answer.get("events", []):
        if event.get("class") != "vm":
            continue
        op = event.get("operation")
        if op == "del":
            out.removed.append(str(event.get("ref")))
            continue
        snapshot = event.get("snapshot") or {}
        if not is_protectable(snapshot):
            continue
        (out.added if op == "add" else out.changed).append(str(snapshot.get("uuid")))
    return out
