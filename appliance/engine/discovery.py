"""Scheduled endpoint discovery, and the seam for plugins that push inventory events.

Every endpoint has a discovery interval (default one hour, 0 turns it off).
``tapir serve`` calls :func:`run_due_discoveries` from a thread of its own, so a
slow vCenter never delays the cron scheduler: endpoints whose
``next_discovery_at`` has passed are claimed (the claim moves that time forward
in the same transaction, so two appliances on one catalog never discover the
same endpoint twice) and discovered one after the other. A discovery records new
assets, marks vanished ones gone (their backups stay) and, when it fails, the
error on the endpoint; see :func:`.endpoints.discover_endpoint`.

A plugin that overrides ``SourcePlugin.watch`` is watched by
:class:`EndpointWatchers`: an inventory event sets ``next_discovery_at`` to now,
and the next tick rediscovers the endpoint.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update

from ..catalog.database import Catalog
from ..catalog.models import Endpoint, utcnow
from ..plugin_api.errors import RunCanceled
from ..plugin_api.roles import SourcePlugin
from .context import EngineContext
from .endpoints import DiscoveryReport, discover_endpoint, endpoint_info

log = logging.getLogger(__name__)

#: Seconds a failed watch waits before it is started again.
WATCH_RESTART = 60.0

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^(\d+)\s*([smhd]?)$")


def parse_interval(text: str) -> int:
    """``90``, ``90s``, ``15m``, ``1h``, ``1d`` to seconds; ``off``, ``never`` or ``0`` to 0."""
    value = text.strip().lower()
    if value in ("off", "never", "no"):
        return 0
    m = _DURATION.match(value)
    if m is None:
        raise ValueError(f"invalid interval {text!r}: use e.g. 30m, 1h, 1d, 3600 or off")
    return int(m.group(1)) * _UNITS[m.group(2) or "s"]


def format_interval(seconds: int) -> str:
    """The shortest exact form (``1h``, ``90m``, ``45s``); ``off`` for 0."""
    if not seconds:
        return "off"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def claim_due_endpoints(catalog: Catalog, now: datetime | None = None) -> list[str]:
    """Names of the endpoints due for discovery, each claimed for this caller.

    A claim moves ``next_discovery_at`` one interval ahead, so another scheduler
    (or this one's next tick) does not take the endpoint while it is discovered;
    the discovery itself then sets the time from when it finished.
    """
    now = now or utcnow()
    due = or_(Endpoint.next_discovery_at.is_(None), Endpoint.next_discovery_at <= now)
    claimed: list[str] = []
    with catalog.session() as s:
        q = (
            select(Endpoint.id, Endpoint.name, Endpoint.discovery_interval)
            .where(Endpoint.discovery_interval > 0, due)
            .order_by(Endpoint.next_discovery_at.is_not(None), Endpoint.next_discovery_at)
        )
        if catalog.is_postgresql:
            q = q.with_for_update(skip_locked=True, of=Endpoint)
        for endpoint_id, name, interval in s.execute(q).all():
            # Conditional, so that a claim on SQLite without row locks is still exclusive.
            result = s.execute(
                update(Endpoint)
                .where(Endpoint.id == endpoint_id, due)
                .values(next_discovery_at=now + timedelta(seconds=interval))
            )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                claimed.append(name)
    return claimed


def request_discovery(catalog: Catalog, name: str, now: datetime | None = None) -> bool:
    """Make ``name`` due at the next tick (an inventory event); False for an unknown name."""
    with catalog.session() as s:
        result = s.execute(
            update(Endpoint).where(Endpoint.name == name).values(next_discovery_at=now or utcnow())
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


@dataclass
class DiscoveryOutcome:
    """One scheduled discovery: its report, or the error that ended it."""

    endpoint: str
    report: DiscoveryReport | None = None
    error: str | None = None


def run_due_discoveries(
    env: EngineContext,
    now: datetime | None = None,
    *,
    audit: Callable[..., None] | None = None,
    stop: threading.Event | None = None,
) -> list[DiscoveryOutcome]:
    """Discover every endpoint that is due; one endpoint's failure does not stop the others.

    ``audit(action, target, **details)`` records discoveries that changed the
    catalog; ``stop`` ends the round between two endpoints.
    """
    outcomes: list[DiscoveryOutcome] = []
    for name in claim_due_endpoints(env.catalog, now):
        if stop is not None and stop.is_set():
            # Claimed but not done: due again at once for whoever runs next.
            request_discovery(env.catalog, name)
            break
        try:
            report = discover_endpoint(env, name)
        except Exception as exc:
            log.warning("scheduled discovery of endpoint %s failed: %s", name, exc)
            outcomes.append(DiscoveryOutcome(name, error=str(exc) or type(exc).__name__))
            continue
        log.info(
            "endpoint %s discovered: %d found, %d new, %d gone",
            name,
            report.found,
            len(report.added),
            len(report.gone),
        )
        if audit is not None and (report.added or report.gone or report.renamed):
            audit(
                "endpoint.discover",
                name,
                scheduled=True,
                found=report.found,
                added=len(report.added),
                gone=len(report.gone),
            )
        outcomes.append(DiscoveryOutcome(name, report=report))
    return outcomes


def has_watch(plugin: SourcePlugin) -> bool:
    """True when the plugin overrides :meth:`SourcePlugin.watch`."""
    return getattr(type(plugin), "watch", SourcePlugin.watch) is not SourcePlugin.watch


class EndpointWatchers:
    """One thread per endpoint whose plugin can watch its inventory; see the module doc."""

    def __init__(
        self, env: EngineContext, stop: threading.Event, restart_after: float = WATCH_RESTART
    ) -> None:
        self.env = env
        self.stop = stop
        self.restart_after = restart_after
        self.threads: dict[str, threading.Thread] = {}

    def sync(self) -> list[str]:
        """Start watching endpoints registered since the last call; returns their names."""
        started: list[str] = []
        with self.env.catalog.session() as s:
            rows = list(s.scalars(select(Endpoint).order_by(Endpoint.name)))
        for row in rows:
            if row.name in self.threads:
                continue
            plugin = self.env.registry.sources.get(row.plugin)
            if plugin is None or not has_watch(plugin):
                continue
            thread = threading.Thread(
                target=self._watch,
                args=(plugin, row.name),
                name=f"tapir-watch-{row.name}",
                daemon=True,
            )
            self.threads[row.name] = thread
            thread.start()
            started.append(row.name)
        return started

    def _check(self) -> None:
        if self.stop.is_set():
            raise RunCanceled("the appliance is stopping")

    def _watch(self, plugin: SourcePlugin, name: str) -> None:
        def on_change() -> None:
            request_discovery(self.env.catalog, name)

        while not self.stop.is_set():
            try:
                with self.env.catalog.session() as s:
                    row = s.scalar(select(Endpoint).where(Endpoint.name == name))
                if row is None:
                    return  # the endpoint was removed
                ctx = self.env.plugin_context(plugin.name)
                ctx.check_canceled = self._check
                plugin.watch(endpoint_info(row), ctx, on_change)
            except RunCanceled:
                return
            except NotImplementedError:
                return
            except Exception:
                log.exception("watching endpoint %s failed; restarting the watch", name)
            self.stop.wait(self.restart_after)
