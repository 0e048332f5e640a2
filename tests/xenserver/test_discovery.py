"""Discovery of the pool: hosts, SRs, VMs (no templates, dom0 or snapshots), disks, tags,
folders and custom fields, as assets of the catalog."""

from __future__ import annotations

import logging

import pytest

from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_api import ConnectionFailed, EndpointInfo, PluginContext
from tapir.plugins.xenserver.role import XenServerPlugin

from .conftest import PASSWORD, USER, Pool


def ctx() -> PluginContext:
    return PluginContext(logger=logging.getLogger("test"), read_secret=lambda name: PASSWORD)


def endpoint(pool: Pool, **options: object) -> EndpointInfo:
    opts: dict[str, object] = {
        "user": USER,
        "password_secret": "endpoint:xen",
        "fingerprint": pool.server.fingerprint,
    }
    opts.update(options)
    return EndpointInfo("xen", "xenserver", pool.server.address, opts)


def test_discovery_lists_real_vms_with_their_metadata(pool: Pool) -> None:
    plugin = XenServerPlugin()
    inv = plugin.inventory(endpoint(pool), ctx())
    assert inv.pool == "pool0"
    assert sorted(h["name"] for h in inv.hosts) == ["xs-02", "xs-master"]
    assert sorted(s["name"] for s in inv.srs) == ["Local storage", "Old NFS"]
    assets = {a.name: a for a in plugin.discover(endpoint(pool), ctx())}
    # Not the template, not dom0, not the administrator's snapshot.
    assert sorted(assets) == ["legacy01", "web01"]
    web = assets["web01"]
    assert web.kind == "vm"
    assert web.external_id == pool.server.xapi.db["VM"][pool.web]["uuid"]
    meta = web.metadata
    assert meta["folder"] == "/prod/web"
    assert meta["host"] == "xs-master" and meta["cluster"] == "pool0"
    assert meta["tags"] == ["prod", "web"]
    assert meta["custom_attributes"] == {"owner": "ops"}
    assert meta["power_state"] == "Running"
    disks = meta["disks"]
    assert [d["userdevice"] for d in disks] == ["0", "1"]
    assert disks[0]["virtual_size"] == 10 * 1024 * 1024 + 512 * 1024
    assert disks[0]["sr"] == "Local storage" and disks[0]["bootable"] is True
    # A halted VM is placed by its affinity host.
    assert assets["legacy01"].metadata["host"] == "xs-02"
    assert assets["legacy01"].metadata["power_state"] == "Halted"


def test_registered_endpoint_discovers_into_the_catalog(app: Appliance, pool: Pool) -> None:
    app.test_endpoint("xen")
    report = app.discover_endpoint("xen")
    assert sorted(report.added) == ["legacy01", "web01"]
    # Renaming a VM keeps its asset (same UUID).
    pool.server.xapi.db["VM"][pool.web]["name_label"] = "web01-renamed"
    report = app.discover_endpoint("xen")
    assert report.renamed == [("web01", "web01-renamed")]
    # The password is sealed, never in the endpoint's options.
    assert PASSWORD not in repr(app.endpoint("xen").options)


def test_failed_discovery_changes_nothing(app: Appliance, pool: Pool) -> None:
    app.discover_endpoint("xen")
    pool.server.xapi.password = "changed"
    with pytest.raises(ConnectionFailed, match="wrong user name or password"):
        app.discover_endpoint("xen")
