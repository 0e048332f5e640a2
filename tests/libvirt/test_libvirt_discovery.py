"""Endpoints by URI, connection tests and discovery of domains, disks and metadata."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from tapir.appliance.plugin_api import (
    ConnectionFailed,
    EndpointInfo,
    PluginContext,
    PluginError,
    RunCanceled,
)
from tapir.plugins.libvirt.domainxml import METADATA_NS

TAGS = f"""<tapir:backup xmlns:tapir="{METADATA_NS}">
  <tapir:tag>prod</tapir:tag><tapir:tag>web</tapir:tag>
  <tapir:attribute name="owner">web team</tapir:attribute>
</tapir:backup>"""

CDROM = """<disk type='file' device='cdrom'><driver name='qemu' type='raw'/>
  <target dev='sda' bus='sata'/><readonly/></disk>"""


def test_connection_reports_the_host(plugin, endpoint, ctx, caplog):
    caplog.set_level("INFO")
    plugin.test_connection(endpoint, ctx)
    assert "connected to qemu+unix:///system" in caplog.text


def test_connection_to_a_missing_socket_fails_clearly(plugin, ctx, tmp_path):
    endpoint = EndpointInfo("kvm", "libvirt", f"qemu+unix:///system?socket={tmp_path}/none")
    with pytest.raises(ConnectionFailed, match=r"cannot connect to qemu\+unix.*none"):
        plugin.test_connection(endpoint, ctx)


@pytest.mark.parametrize("address", ["kvm1.example.org", "/var/run/libvirt", "ftp//x"])
def test_an_address_that_is_no_uri_is_refused(plugin, ctx, address):
    with pytest.raises(PluginError, match="is not a libvirt URI"):
        plugin.discover(EndpointInfo("kvm", "libvirt", address), ctx)


def test_tcp_transport_without_host_is_refused(plugin, ctx, libvirtd):
    endpoint = EndpointInfo("kvm", "libvirt", libvirtd.uri, {"nbd_transport": "tcp"})
    with pytest.raises(PluginError, match="tcp transport needs nbd_host"):
        plugin.discover(endpoint, ctx)


def test_discovery_lists_domains_with_disks_tags_and_state(
    plugin, endpoint, ctx, conn, make_domain
):
    running = make_domain("-a", metadata=TAGS, title="Web server", extra_disks=(CDROM,))
    stopped = make_domain("-b", start=False)

    assets = {a.name: a for a in plugin.discover(endpoint, ctx)}

    a = assets[running.name()]
    assert a.kind == "vm"
    assert a.external_id == running.UUIDString()
    assert a.metadata["host"] == conn.getHostname()
    assert a.metadata["power_state"] == "running"
    assert a.metadata["tags"] == ["prod", "web"]
    assert a.metadata["custom_attributes"] == {"owner": "web team"}
    assert a.metadata["title"] == "Web server"
    disks = {d["target"]: d for d in a.metadata["disks"]}
    assert disks["vda"]["format"] == "qcow2" and disks["vda"]["device"] == "disk"
    assert disks["sda"]["device"] == "cdrom" and disks["sda"]["readonly"] is True
    assert "folder" not in a.metadata

    b = assets[stopped.name()]
    assert b.metadata["power_state"] == "shutoff"
    assert b.metadata["tags"] == [] and b.metadata["custom_attributes"] == {}


def test_capabilities_are_honest(plugin):
    assert plugin.capabilities() == {"incremental", "quiesce"}
    assert {o.name for o in plugin.job_options()} == {"quiesce"}


def test_watch_reports_a_new_domain_at_once_and_ends_when_canceled(
    plugin, endpoint, libvirtd, make_domain
):
    stop = threading.Event()
    changes: list[float] = []
    changed = threading.Event()

    def check_canceled() -> None:
        if stop.is_set():
            raise RunCanceled("appliance stopping")

    def on_change() -> None:
        changes.append(time.monotonic())
        changed.set()

    ctx = PluginContext(logger=logging.getLogger("tests.libvirt"), check_canceled=check_canceled)
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            plugin.watch(endpoint, ctx, on_change)
        except BaseException as exc:  # the thread's result, checked below
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        # The watch reports once on start (what changed while nobody watched)...
        assert changed.wait(30), "the watch never started"
        changed.clear()
        before = len(changes)
        # ...then each lifecycle event: a domain defined by someone else.
        make_domain("-new", start=False)
        assert changed.wait(30), "no event for the new domain"
        assert len(changes) > before
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], RunCanceled), outcome


def test_watch_of_an_unreachable_host_fails_clearly(plugin, ctx, tmp_path):
    gone = EndpointInfo(
        name="gone", plugin="libvirt", address=f"qemu+unix:///system?socket={tmp_path}/none.sock"
    )
    with pytest.raises(ConnectionFailed, match="cannot connect"):
        plugin.watch(gone, ctx, lambda: None)
