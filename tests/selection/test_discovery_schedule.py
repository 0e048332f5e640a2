"""Scheduled discovery: due endpoints claimed once, failures recorded and retried sooner,
the serve loop's discovery thread, and the inventory-event seam (``watch``)."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pg_server import create_database
from sqlalchemy import text

from tapir.appliance.catalog.database import Catalog
from tapir.appliance.catalog.migrate import upgrade
from tapir.appliance.catalog.models import utcnow
from tapir.appliance.engine import discovery
from tapir.appliance.engine.discovery import (
    EndpointWatchers,
    claim_due_endpoints,
    format_interval,
    parse_interval,
)
from tapir.appliance.engine.service import Appliance
from tapir.appliance.engine.worker import WorkerPool
from tapir.appliance.plugin_api import EndpointInfo, PluginContext

from .conftest import PASSWORD, HvHooks, ScriptedHypervisor, vm_meta


def test_due_endpoints_are_discovered_and_rescheduled(app: Appliance, hv: HvHooks) -> None:
    hv.plugin.vms = {"1": ("web-01", vm_meta("/dc/vm"))}
    app.register_endpoint(
        "quiet", "scripthv", "q", options={"user": "u"}, password=PASSWORD, discovery_interval=0
    )
    now = utcnow()
    (outcome,) = app.run_due_discoveries(now)  # never discovered: due at once
    assert outcome.endpoint == "hv1" and outcome.error is None
    assert outcome.report is not None and outcome.report.added == ["web-01"]
    row = app.endpoint("hv1")
    assert row.last_discovery_at is not None and row.last_discovery_error is None
    assert row.next_discovery_at == row.last_discovery_at + timedelta(hours=1)
    assert app.run_due_discoveries(now + timedelta(minutes=30)) == []
    # An hour later it is due again; the endpoint with interval 0 never is.
    assert [o.endpoint for o in app.run_due_discoveries(now + timedelta(hours=2))] == ["hv1"]
    assert app.endpoint("quiet").last_discovery_at is None
    events = [(e.actor, e.action, e.target) for e in app.audit_events()]
    assert ("scheduler", "endpoint.discover", "hv1") in events


def test_a_failed_discovery_is_recorded_and_retried_sooner(
    lite_app: Appliance, hv: HvHooks
) -> None:
    hv.plugin.vms = {"1": ("web-01", vm_meta("/dc/vm"))}
    lite_app.discover_endpoint("hv1")
    hv.plugin.down = True
    later = utcnow() + timedelta(hours=2)
    (outcome,) = lite_app.run_due_discoveries(later)
    assert outcome.error == "cannot reach hv1.example: connection refused"
    row = lite_app.endpoint("hv1")
    assert row.last_discovery_error == outcome.error
    assert row.next_discovery_at is not None
    assert row.next_discovery_at - timedelta(seconds=300) <= utcnow()
    # The catalog keeps what the last good discovery saw.
    assert [a.present for a in lite_app.endpoint_assets("hv1")] == [True]
    hv.plugin.down = False
    (again,) = lite_app.run_due_discoveries(utcnow() + timedelta(minutes=6))
    assert again.error is None
    assert lite_app.endpoint("hv1").last_discovery_error is None


def test_a_claim_is_taken_once(app: Appliance) -> None:
    now = utcnow()
    # Two schedulers at the same instant: exactly one of them gets the endpoint.
    barrier = threading.Barrier(2)
    claims: list[list[str]] = []

    def claim() -> None:
        barrier.wait(60)
        claims.append(claim_due_endpoints(app.catalog, now))

    threads = [threading.Thread(target=claim) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(claims) == [[], ["hv1"]]
    discovery.request_discovery(app.catalog, "hv1", now)
    assert claim_due_endpoints(app.catalog, now) == ["hv1"]
    assert claim_due_endpoints(app.catalog, now) == []
    assert discovery.request_discovery(app.catalog, "hv1", now)
    assert not discovery.request_discovery(app.catalog, "nope", now)
    assert claim_due_endpoints(app.catalog, now) == ["hv1"]


def test_intervals_parse_and_bad_ones_change_nothing(lite_app: Appliance) -> None:
    assert [parse_interval(t) for t in ("90", "90s", "15m", "1h", "2d", "off", "0")] == [
        90,
        90,
        900,
        3600,
        172800,
        0,
        0,
    ]
    assert [format_interval(s) for s in (0, 45, 5400, 3600, 86400)] == [
        "off",
        "45s",
        "90m",
        "1h",
        "1d",
    ]
    with pytest.raises(ValueError, match="invalid interval"):
        parse_interval("soon")
    with pytest.raises(ValueError, match="at least 60 seconds, not 30"):
        lite_app.set_discovery_interval("hv1", 30)
    with pytest.raises(KeyError, match="no endpoint named 'nope'"):
        lite_app.set_discovery_interval("nope", 600)
    with pytest.raises(ValueError, match="at least 60 seconds"):
        lite_app.register_endpoint(
            "x", "scripthv", "x", options={"user": "u"}, password=PASSWORD, discovery_interval=5
        )
    assert lite_app.endpoint("hv1").discovery_interval == 3600
    lite_app.set_discovery_interval("hv1", 0)
    assert claim_due_endpoints(lite_app.catalog, utcnow()) == []


def test_the_serve_loop_discovers_on_its_own(lite_app: Appliance, hv: HvHooks) -> None:
    hv.plugin.vms = {"1": ("web-01", vm_meta("/dc/vm"))}
    pool = WorkerPool(lite_app, 0, scheduler=True, tick_interval=0.05)
    pool.start()
    try:
        assert hv.plugin.discovered.wait(60)
    finally:
        pool.stop(timeout=60)
    assert not any(t.is_alive() for t in pool.threads)
    assert [a.name for a in lite_app.endpoint_assets("hv1")] == ["web-01"]
    assert lite_app.endpoint("hv1").last_discovery_at is not None


class WatchingHypervisor(ScriptedHypervisor):
    """Reports one inventory change, then follows 'events' until the appliance stops."""

    def __init__(self, fail_first: bool = False) -> None:
        super().__init__()
        self.watch_calls = 0
        self.notified = threading.Event()
        self.stopped = threading.Event()
        self.fail_first = fail_first

    def watch(self, endpoint: EndpointInfo, ctx: PluginContext, on_change: Any) -> None:
        self.watch_calls += 1
        if self.fail_first and self.watch_calls == 1:
            raise ConnectionError("event stream closed")
        on_change()
        self.notified.set()
        try:
            while True:
                ctx.check_canceled()
                threading.Event().wait(0.01)
        finally:
            self.stopped.set()


@pytest.mark.parametrize("fail_first", [False, True])
def test_an_inventory_event_makes_the_endpoint_due(
    lite_app: Appliance, hv: HvHooks, fail_first: bool
) -> None:
    watcher = WatchingHypervisor(fail_first)
    lite_app.registry.sources["scripthv"] = watcher
    watcher.vms = {"1": ("web-01", vm_meta("/dc/vm"))}
    lite_app.discover_endpoint("hv1")
    assert claim_due_endpoints(lite_app.catalog, utcnow()) == []
    stop = threading.Event()
    watchers = EndpointWatchers(lite_app.env, stop, restart_after=0.01)
    assert watchers.sync() == ["hv1"]
    assert watchers.sync() == []  # one watch per endpoint
    try:
        assert watcher.notified.wait(60)
        assert claim_due_endpoints(lite_app.catalog, utcnow()) == ["hv1"]
    finally:
        stop.set()
        watchers.threads["hv1"].join(60)
    assert watcher.stopped.is_set() and not watchers.threads["hv1"].is_alive()
    assert watcher.watch_calls == (2 if fail_first else 1)


def test_plugins_without_events_are_not_watched(lite_app: Appliance) -> None:
    assert not discovery.has_watch(lite_app.registry.sources["scripthv"])
    assert EndpointWatchers(lite_app.env, threading.Event()).sync() == []


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migration_gives_existing_endpoints_the_default_interval(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        url = create_database(request.getfixturevalue("pg_url"), f"m_{uuid.uuid4().hex[:16]}")
    catalog = Catalog(url)
    try:
        upgrade(catalog.engine, "0003")
        with catalog.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO endpoints (name, plugin, address, options, created_at) "
                    "VALUES ('old', 'vmware', 'vc', '{}', CURRENT_TIMESTAMP)"
                )
            )
        catalog.upgrade()
        with catalog.engine.connect() as conn:
            row = conn.execute(
                text("SELECT discovery_interval, next_discovery_at FROM endpoints")
            ).one()
        assert tuple(row) == (3600, None)
        assert claim_due_endpoints(catalog, utcnow()) == ["old"]
    finally:
        catalog.dispose()
