"""Following a libvirt host's domain events, so that a new domain is registered at once.

libvirt delivers events only to a connection opened after an event loop
implementation was registered, and only while that loop runs. The watch runs
libvirt's default loop in the calling thread, with a one-second timer so that it
wakes up to check for cancellation, and calls ``on_change`` for every lifecycle
event (defined, undefined, started, stopped...: power state changes matter to
selection rules too). Keepalive probes notice a host that went away; the watch
then ends with ConnectionFailed and the appliance restarts it later.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import libvirt

from tapir.appliance.plugin_api import ConnectionFailed, PluginContext

from .connection import connect
from .options import ConnectionSettings

_loop_lock = threading.Lock()
_loop_registered = False


def _ensure_event_loop() -> None:
    # One default implementation per process, registered before the connection opens.
    global _loop_registered
    with _loop_lock:
        if not _loop_registered:
            libvirt.virEventRegisterDefaultImpl()
            _loop_registered = True


def watch_domains(
    settings: ConnectionSettings, ctx: PluginContext, on_change: Callable[[], None]
) -> None:
    """Block, calling ``on_change()`` at each domain lifecycle event, until canceled."""
    _ensure_event_loop()
    closed: list[str] = []

    def lifecycle(
        _conn: object, dom: libvirt.virDomain, event: int, _detail: int, _opaque: object
    ) -> None:
        ctx.logger.info("libvirt event %d for domain %s", event, dom.name())
        on_change()

    def connection_closed(_conn: object, reason: int, _opaque: object) -> None:
        closed.append(f"reason {reason}")

    timer = libvirt.virEventAddTimeout(1000, lambda _timer, _opaque: None, None)
    try:
        with connect(settings) as conn:
            conn.setKeepAlive(5, 3)
            conn.registerCloseCallback(connection_closed, None)
            callback = conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, lifecycle, None
            )
            try:
                # Anything defined while the watch was not running shows up now.
                on_change()
                while not closed:
                    ctx.check_canceled()
                    libvirt.virEventRunDefaultImpl()
            finally:
                if not closed:
                    conn.domainEventDeregisterAny(callback)
                    conn.unregisterCloseCallback()
    finally:
        libvirt.virEventRemoveTimeout(timer)
    raise ConnectionFailed(f"the connection to {settings.uri} closed ({closed[0]})")
