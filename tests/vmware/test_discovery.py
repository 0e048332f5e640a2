"""Discovery against vcsim: counts, metadata, and one property collection for everything."""

from __future__ import annotations

import logging
from typing import Any

from pyVmomi import vim
from vcsim_server import Vcsim

from tapir.appliance.plugin_api import EndpointInfo, PluginContext
from tapir.plugins.vmware.role import VmwarePlugin

from .inventory_changes import create_vm, find, set_custom_attribute


def endpoint(vcsim: Vcsim) -> EndpointInfo:
    return EndpointInfo(
        "vc",
        "vmware",
        vcsim.address,
        {"user": vcsim.username, "password_secret": "pw", "fingerprint": vcsim.fingerprint},
    )


def context(vcsim: Vcsim) -> PluginContext:
    secrets = {"pw": vcsim.password}
    return PluginContext(logger=logging.getLogger("test.vmware"), read_secret=secrets.__getitem__)


def inventory_path(si: Any, obj: Any) -> str:
    """An entity's path below the root folder, walked object by object (the slow way)."""
    root = si.RetrieveContent().rootFolder
    names = []
    while obj is not None and obj != root:
        names.append(obj.name)
        obj = obj.parent
    return "/" + "/".join(reversed(names))


def find_dc(obj: Any) -> Any:
    while not isinstance(obj, vim.Datacenter):
        obj = obj.parent
    return obj


def test_inventory_counts_match_the_model(vcsim: Vcsim) -> None:
    inv = VmwarePlugin().inventory(endpoint(vcsim), context(vcsim))
    count = vcsim.count
    assert len(inv.datacenters) == count["datacenter"] == 2
    assert len(inv.clusters) == count["cluster"] == 4
    assert len(inv.hosts) == count["host"] == 10
    assert len(inv.resource_pools) == count["pool"]
    assert len(inv.datastores) == count["datastore"]
    assert len(inv.vms) == count["vm"] == 12
    # The model counts the root folder, which is outside the container view.
    assert len(inv.folders) == count["folder"] - 1
    assert not inv.skipped
    assert {d.path for d in inv.datacenters} == {"/DC0", "/F0/DC1"}
    assert all(h.extra["connection_state"] == "connected" for h in inv.hosts)
    clustered = [h for h in inv.hosts if h.extra["cluster"]]
    assert len(clustered) == 8


def test_vm_assets_carry_their_placement_and_disks(vcsim: Vcsim, vsphere: Any) -> None:
    assets = VmwarePlugin().discover(endpoint(vcsim), context(vcsim))
    by_name = {a.name: a for a in assets}
    assert len(by_name) == len(assets) == 12
    for a in assets:
        vm = find(vsphere, vim.VirtualMachine, a.name)
        assert a.kind == "vm"
        assert a.external_id == vm.config.instanceUuid
        meta = a.metadata
        assert meta["power_state"] == vm.runtime.powerState
        assert meta["host"] == vm.runtime.host.name
        assert meta["folder"] == inventory_path(vsphere, vm.parent)
        assert str(meta["folder"]).startswith(inventory_path(vsphere, find_dc(vm)))
        disks = meta["disks"]
        assert isinstance(disks, list) and disks
        expected = [
            d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk)
        ]
        assert [d["key"] for d in disks] == [d.key for d in expected]
        for got, dev in zip(disks, expected, strict=True):
            assert got["capacity_bytes"] == (dev.capacityInBytes or dev.capacityInKB * 1024) > 0
            assert got["file_name"] == dev.backing.fileName
            assert got["datastore"] == dev.backing.datastore.name
            assert got["label"] == dev.deviceInfo.label
    clustered = by_name["DC0_C0_RP0_VM0"].metadata
    assert clustered["cluster"] == "DC0_C0"
    assert clustered["resource_pool"] == "/DC0/host/DC0_C0/Resources"
    standalone = by_name["DC0_H0_VM0"].metadata
    assert standalone["cluster"] is None and standalone["host"] == "DC0_H0"


def test_custom_attributes_are_discovered(vcsim: Vcsim, vsphere: Any) -> None:
    set_custom_attribute(vsphere, "DC0_H0_VM1", "backup-tier", "gold")
    assets = {a.name: a for a in VmwarePlugin().discover(endpoint(vcsim), context(vcsim))}
    assert assets["DC0_H0_VM1"].metadata["custom_attributes"] == {"backup-tier": "gold"}
    assert assets["DC0_H0_VM0"].metadata["custom_attributes"] == {}


def test_discovery_is_one_property_collection(vcsim: Vcsim, vsphere: Any) -> None:
    plugin, ep, ctx = VmwarePlugin(), endpoint(vcsim), context(vcsim)

    def calls_of_one_discovery() -> dict[str, int]:
        before = vcsim.soap_calls()
        plugin.discover(ep, ctx)
        after = vcsim.soap_calls()
        return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}

    first = calls_of_one_discovery()
    # Log in and out: pyvmomi's Disconnect reads the service content again (one
    # RetrieveServiceContent and one Fetch of the session manager) before Logout.
    assert first == {
        "RetrieveServiceContent": 2,
        "Fetch": 1,
        "Login": 1,
        "CreateContainerView": 1,
        "RetrievePropertiesEx": 1,
        "DestroyView": 1,
        "Logout": 1,
    }
    # Ten more VMs cost no extra round trip.
    for i in range(10):
        create_vm(vsphere, f"extra-{i}")
    assert len(plugin.discover(ep, ctx)) == 22
    assert calls_of_one_discovery() == first
