"""Discovery of a vSphere inventory in one property collection.

A ContainerView over the root folder holds every entity; one
``RetrievePropertiesEx`` (continued only when vCenter pages the answer) brings
back the few properties Tapir needs of all of them. Asking object by object
would cost one round trip per VM, which on a farm of thousands is minutes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pyVmomi import vim, vmodl

# The properties fetched per type (the "parent" chain gives folder paths).
_PROPERTIES: dict[type, list[str]] = {
    vim.Folder: ["name", "parent"],
    vim.Datacenter: ["name", "parent"],
    vim.ComputeResource: ["name", "parent"],
    vim.ClusterComputeResource: ["name", "parent"],
    vim.HostSystem: ["name", "parent", "runtime.connectionState", "runtime.powerState"],
    vim.ResourcePool: ["name", "parent", "owner"],
    vim.VirtualApp: ["name", "parent", "owner"],
    vim.Datastore: ["name", "parent", "summary.type", "summary.capacity", "summary.freeSpace"],
    vim.VirtualMachine: [
        "name",
        "parent",
        "resourcePool",
        "runtime.host",
        "runtime.powerState",
        "config.instanceUuid",
        "config.uuid",
        "config.template",
        "config.guestFullName",
        "config.hardware.device",
        "customValue",
    ],
}


@dataclass(frozen=True)
class VirtualDisk:
    """One virtual disk of a VM."""

    key: int
    label: str
    capacity_bytes: int
    file_name: str  # "[datastore] folder/disk.vmdk"
    datastore: str | None
    thin: bool | None = None

    def as_dict(self) -> dict[str, object]:
        """The disk as stored in an asset's metadata."""
        return {
            "key": self.key,
            "label": self.label,
            "capacity_bytes": self.capacity_bytes,
            "file_name": self.file_name,
            "datastore": self.datastore,
            "thin": self.thin,
        }


@dataclass(frozen=True)
class VirtualMachine:
    """A VM as discovery sees it."""

    moref: str
    name: str
    instance_uuid: str
    bios_uuid: str | None
    folder: str
    datacenter: str | None
    cluster: str | None
    host: str | None
    resource_pool: str | None
    power_state: str
    template: bool
    guest: str | None
    disks: tuple[VirtualDisk, ...]
    custom_attributes: dict[str, str] = field(default_factory=dict)
    #: vSphere tags, as NAME and CATEGORY:NAME (filled from the vAPI service, see .tags).
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Entity:
    """A named inventory object other than a VM (datacenter, cluster, host, pool, folder...)."""

    moref: str
    kind: str
    name: str
    path: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Inventory:
    """Everything one discovery found."""

    datacenters: list[Entity] = field(default_factory=list)
    folders: list[Entity] = field(default_factory=list)
    clusters: list[Entity] = field(default_factory=list)
    hosts: list[Entity] = field(default_factory=list)
    resource_pools: list[Entity] = field(default_factory=list)
    datastores: list[Entity] = field(default_factory=list)
    vms: list[VirtualMachine] = field(default_factory=list)
    #: VMs left out (no configuration: inaccessible or orphaned), with the reason.
    skipped: list[str] = field(default_factory=list)


def _retrieve(content: Any) -> list[Any]:
    """Every ObjectContent of the inventory, in one RetrievePropertiesEx (plus continuations)."""
    pc = content.propertyCollector
    view = content.viewManager.CreateContainerView(content.rootFolder, list(_PROPERTIES), True)
    try:
        query = vmodl.query.PropertyCollector
        object_specs = [
            query.ObjectSpec(
                obj=view,
                skip=True,
                selectSet=[
                    query.TraversalSpec(
                        name="view", type=vim.view.ContainerView, path="view", skip=False
                    )
                ],
            )
        ]
        prop_specs = [query.PropertySpec(type=t, pathSet=p) for t, p in _PROPERTIES.items()]
        if content.customFieldsManager is not None:
            # The attribute names ride along in the same call (a VM holds only their keys).
            object_specs.append(query.ObjectSpec(obj=content.customFieldsManager, skip=False))
            prop_specs.append(query.PropertySpec(type=vim.CustomFieldsManager, pathSet=["field"]))
        spec = query.FilterSpec(objectSet=object_specs, propSet=prop_specs)
        out: list[Any] = []
        result = pc.RetrievePropertiesEx([spec], query.RetrieveOptions())
        while result is not None:
            out.extend(result.objects or [])
            if not result.token:
                break
            result = pc.ContinueRetrievePropertiesEx(result.token)
        return out
    finally:
        view.DestroyView()


def _disks(devices: Iterable[Any], datastore_names: dict[str, str]) -> tuple[VirtualDisk, ...]:
    disks = []
    for dev in devices or ():
        if not isinstance(dev, vim.vm.device.VirtualDisk):
            continue
        backing = dev.backing
        capacity = dev.capacityInBytes or (dev.capacityInKB or 0) * 1024
        ds = getattr(backing, "datastore", None)
        disks.append(
            VirtualDisk(
                key=int(dev.key),
                label=dev.deviceInfo.label if dev.deviceInfo else f"disk {dev.key}",
                capacity_bytes=int(capacity),
                file_name=str(getattr(backing, "fileName", "") or ""),
                datastore=datastore_names.get(ds._moId) if ds is not None else None,
                thin=getattr(backing, "thinProvisioned", None),
            )
        )
    return tuple(disks)


def collect(content: Any) -> Inventory:
    """Discover the inventory behind a ServiceInstance's content, in one retrieval."""
    objects = _retrieve(content)
    props: dict[str, dict[str, Any]] = {}
    kinds: dict[str, Any] = {}
    field_names: dict[int, str] = {}
    for oc in objects:
        values = {p.name: p.val for p in (oc.propSet or [])}
        if isinstance(oc.obj, vim.CustomFieldsManager):
            field_names = {int(f.key): str(f.name) for f in values.get("field") or []}
            continue
        props[oc.obj._moId] = values
        kinds[oc.obj._moId] = oc.obj

    def parent_id(moid: str) -> str | None:
        parent = props.get(moid, {}).get("parent")
        return parent._moId if parent is not None else None

    def path_of(moid: str | None) -> str:
        # The root folder is not in the view, so the chain stops just below it.
        names = []
        while moid is not None and moid in props:
            names.append(str(props[moid].get("name", moid)))
            moid = parent_id(moid)
        return "/" + "/".join(reversed(names))

    def ancestor(moid: str | None, kind: type) -> str | None:
        while moid is not None and moid in props:
            if isinstance(kinds[moid], kind):
                return moid
            moid = parent_id(moid)
        return None

    def name_of(moid: str | None) -> str | None:
        return str(props[moid]["name"]) if moid is not None and moid in props else None

    inv = Inventory()
    datastore_names = {
        m: str(props[m]["name"]) for m, o in kinds.items() if isinstance(o, vim.Datastore)
    }
    for moid, obj in kinds.items():
        p = props[moid]
        if isinstance(obj, vim.VirtualMachine):
            continue
        entity = Entity(moid, obj._wsdlName, str(p.get("name")), path_of(moid))
        if isinstance(obj, vim.Datacenter):
            inv.datacenters.append(entity)
        elif isinstance(obj, vim.Folder):
            inv.folders.append(entity)
        elif isinstance(obj, vim.ClusterComputeResource):
            inv.clusters.append(entity)
        elif isinstance(obj, vim.HostSystem):
            cluster = ancestor(parent_id(moid), vim.ClusterComputeResource)
            extra = {
                "cluster": name_of(cluster),
                "connection_state": str(p.get("runtime.connectionState")),
                "power_state": str(p.get("runtime.powerState")),
            }
            inv.hosts.append(Entity(moid, "HostSystem", entity.name, entity.path, extra))
        elif isinstance(obj, vim.ResourcePool):
            inv.resource_pools.append(entity)
        elif isinstance(obj, vim.Datastore):
            extra = {
                "type": p.get("summary.type"),
                "capacity_bytes": p.get("summary.capacity"),
                "free_bytes": p.get("summary.freeSpace"),
            }
            inv.datastores.append(Entity(moid, "Datastore", entity.name, entity.path, extra))
    for moid, obj in kinds.items():
        if not isinstance(obj, vim.VirtualMachine):
            continue
        p = props[moid]
        uuid = p.get("config.instanceUuid")
        if not uuid:
            inv.skipped.append(f"{p.get('name', moid)}: no configuration (inaccessible?)")
            continue
        host = p.get("runtime.host")
        host_id = host._moId if host is not None else None
        cluster = ancestor(parent_id(host_id), vim.ClusterComputeResource) if host_id else None
        pool = p.get("resourcePool")
        inv.vms.append(
            VirtualMachine(
                moref=moid,
                name=str(p.get("name")),
                instance_uuid=str(uuid),
                bios_uuid=p.get("config.uuid"),
                folder=path_of(parent_id(moid)),
                datacenter=name_of(ancestor(moid, vim.Datacenter)),
                cluster=name_of(cluster),
                host=name_of(host_id),
                resource_pool=path_of(pool._moId) if pool is not None else None,
                power_state=str(p.get("runtime.powerState")),
                template=bool(p.get("config.template")),
                guest=p.get("config.guestFullName"),
                disks=_disks(p.get("config.hardware.device") or (), datastore_names),
                custom_attributes={
                    field_names.get(int(cv.key), str(cv.key)): str(getattr(cv, "value", ""))
                    for cv in p.get("customValue") or []
                },
            )
        )
    return inv
