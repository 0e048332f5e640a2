"""Where a restore goes: the datacenter, host, resource pool, datastores and networks,
looked up by name and checked (existence, free space) before anything is changed."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from pyVmomi import vim

from tapir.appliance.plugin_api import PluginError

from .datastore import DatastoreFiles, DatastorePath


def _all(content: Any, kind: type, root: Any = None) -> list[Any]:
    view = content.viewManager.CreateContainerView(root or content.rootFolder, [kind], True)
    try:
        return list(view.view)
    finally:
        view.DestroyView()


def datacenter(content: Any, name: str | None) -> Any:
    """The datacenter named ``name`` (the VM's original one), or the only one there is."""
    centers = _all(content, vim.Datacenter)
    if name:
        for dc in centers:
            if dc.name == name:
                return dc
    if len(centers) == 1:
        return centers[0]
    names = ", ".join(sorted(dc.name for dc in centers))
    raise PluginError(f"datacenter {name!r} not found on the vCenter (it has: {names})")


def datacenter_path(content: Any, dc: Any) -> str:
    """The ``dcPath`` of a datacenter: its inventory path below the root folder."""
    names = []
    obj = dc
    while obj is not None and obj != content.rootFolder:
        names.append(str(obj.name))
        obj = obj.parent
    return "/".join(reversed(names))


def find_vm(content: Any, dc: Any, name: str) -> Any | None:
    """The VM named ``name`` in the datacenter, or None."""
    for vm in _all(content, vim.VirtualMachine, dc.vmFolder):
        if vm.name == name:
            return vm
    return None


def host(content: Any, dc: Any, name: str | None, option: str = "host") -> Any:
    """The connected ESXi host named ``name`` in the datacenter."""
    hosts = _all(content, vim.HostSystem, dc.hostFolder)
    if not name:
        raise PluginError(f"the original host is not known: give the restore option {option}")
    for h in hosts:
        if h.name == name:
            if str(h.runtime.connectionState) != "connected":
                raise PluginError(f"host {name} is {h.runtime.connectionState}, not connected")
            return h
    shown = ", ".join(sorted(h.name for h in hosts))
    raise PluginError(f"host {name!r} not found in datacenter {dc.name} (it has: {shown})")


def resource_pool(content: Any, host_obj: Any, name: str | None) -> Any:
    """The pool named ``name`` of the host's cluster (or host), or its root pool."""
    root = host_obj.parent.resourcePool
    if not name:
        return root
    pools = [root, *_all(content, vim.ResourcePool, root)]
    for pool in pools:
        if pool.name == name:
            return pool
    shown = ", ".join(sorted({p.name for p in pools}))
    raise PluginError(f"resource pool {name!r} not found for host {host_obj.name} ({shown})")


def datastore(host_obj: Any, name: str) -> Any:
    """The datastore ``name`` as the host sees it (it must be mounted there and accessible)."""
    for ds in host_obj.datastore:
        if ds.name == name:
            if not ds.summary.accessible:
                raise PluginError(f"datastore {name} is not accessible")
            return ds
    shown = ", ".join(sorted(ds.name for ds in host_obj.datastore))
    raise PluginError(f"datastore {name!r} is not available on host {host_obj.name} ({shown})")


def check_space(datastores: dict[str, Any], needed: dict[str, int]) -> None:
    """Refuse before any upload when a datastore lacks the space its disks need."""
    for name, size in needed.items():
        free = int(datastores[name].summary.freeSpace or 0)
        if size > free:
            raise PluginError(
                f"datastore {name} has {free} bytes free, the restore needs {size}: "
                "choose another datastore (restore option datastore) or make room"
            )


def network(host_obj: Any, name: str) -> Any:
    """The network (standard or distributed port group) ``name`` as the host sees it."""
    for net in host_obj.network:
        if net.name == name:
            return net
    shown = ", ".join(sorted({n.name for n in host_obj.network}))
    raise PluginError(
        f"network {name!r} is not available on host {host_obj.name} (it has: {shown}); "
        "map the adapters with the restore option network"
    )


def network_by_backing(host_obj: Any, backing: dict[str, Any]) -> Any | None:
    """The host's network a stored adapter backing named, or None when it is gone."""
    port = backing.get("port")
    for net in host_obj.network:
        if isinstance(net, vim.dvs.DistributedVirtualPortgroup):
            if isinstance(port, dict) and net.key == port.get("portgroupKey"):
                return net
        elif not isinstance(port, dict) and net.name == backing.get("deviceName"):
            return net
    return None


@dataclass(frozen=True)
class FolderChoice:
    """A datastore folder no file of the restore exists in yet."""

    name: str
    files: list[DatastorePath]


def free_folder(
    files: DatastoreFiles, datastores: Iterable[str], base: str, names: list[str]
) -> FolderChoice:
    """``base``, ``base_1``, ... : the first folder where none of ``names`` exists on any of
    ``datastores``, so a restore never overwrites another VM's disk."""
    for n in range(100):
        folder = base if n == 0 else f"{base}_{n}"
        paths = [DatastorePath(ds, f"{folder}/{name}") for ds in datastores for name in names]
        if not any(files.exists(p) for p in paths):
            return FolderChoice(folder, paths)
    raise PluginError(f"no free folder name for {base!r} on datastores {sorted(datastores)}")


def make_directory(content: Any, dc: Any, path: DatastorePath) -> None:
    """Create a datastore folder (and its parents); an existing one is fine."""
    with suppress(vim.fault.FileAlreadyExists):
        content.fileManager.MakeDirectory(str(path), dc, True)
