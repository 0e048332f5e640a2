"""The ``vmware`` hypervisor role: endpoints, connection test, discovery and full backups.

Full backups go through a snapshot and the datastore HTTPS path (see
:mod:`.backup`); restores (a whole VM, disks attached to an existing VM, or disk
images downloaded) go the other way (see :mod:`.restore`).
:meth:`VmwarePlugin.capabilities` claims only what works.
"""

from __future__ import annotations

import dataclasses

from tapir.appliance.plugin_api import (
    AssetInfo,
    BackupRequest,
    BackupResult,
    BackupSink,
    EndpointInfo,
    HypervisorPlugin,
    OptionSpec,
    PluginContext,
    PluginError,
    RestoreRequest,
    RestoreResult,
    RestoreSource,
)

from . import connection
from .backup import backup_vm
from .inventory import Inventory, VirtualMachine, collect
from .options import ENDPOINT_OPTIONS, connection_settings
from .restore import restore as restore_vm
from .restore_options import RESTORE_OPTIONS
from .tags import TagServiceUnavailable, vm_tags

JOB_OPTIONS = [
    OptionSpec(
        "quiesce",
        "bool",
        "quiesce the guest through VMware Tools before the snapshot (a warning when impossible)",
        default=False,
    ),
]


def vm_asset(vm: VirtualMachine) -> AssetInfo:
    """The catalog's view of one VM (external id: its instance UUID, stable across renames)."""
    return AssetInfo(
        kind="vm",
        name=vm.name,
        external_id=vm.instance_uuid,
        metadata={
            "moref": vm.moref,
            "bios_uuid": vm.bios_uuid,
            "folder": vm.folder,
            "datacenter": vm.datacenter,
            "cluster": vm.cluster,
            "host": vm.host,
            "resource_pool": vm.resource_pool,
            "power_state": vm.power_state,
            "template": vm.template,
            "guest": vm.guest,
            "disks": [d.as_dict() for d in vm.disks],
            "custom_attributes": dict(vm.custom_attributes),
            "tags": list(vm.tags),
        },
    )


class VmwarePlugin(HypervisorPlugin):
    """VMware vSphere through pyvmomi (vCenter or a standalone ESXi host)."""

    name = "vmware"
    title = "VMware vSphere"

    def endpoint_options(self) -> list[OptionSpec]:
        """address, user, password (a secret name), verify_tls, fingerprint, ca_file, timeout."""
        return list(ENDPOINT_OPTIONS)

    def job_options(self) -> list[OptionSpec]:
        """``quiesce``: ask VMware Tools for an application-consistent snapshot."""
        return list(JOB_OPTIONS)

    def capabilities(self) -> set[str]:
        """``quiesce``, and ``incremental`` through Changed Block Tracking."""
        return {"quiesce", "incremental"}

    def _endpoint(self, endpoint: EndpointInfo | None) -> EndpointInfo:
        if endpoint is None:
            raise PluginError("the vmware plugin needs an endpoint (a vCenter or ESXi host)")
        return endpoint

    def test_connection(self, endpoint: EndpointInfo, ctx: PluginContext) -> None:
        """Log in and out once; raises ConnectionFailed with the reason."""
        settings = connection_settings(self._endpoint(endpoint), ctx)
        with connection.session(settings) as si:
            about = si.content.about
            ctx.logger.info("connected to %s: %s", settings.address, about.fullName)

    def inventory(self, endpoint: EndpointInfo, ctx: PluginContext) -> Inventory:
        """The whole inventory of ``endpoint`` (one property collection)."""
        settings = connection_settings(self._endpoint(endpoint), ctx)
        with connection.session(settings) as si:
            inv = collect(si.content)
        try:
            tagged = vm_tags(settings)
        except TagServiceUnavailable as exc:
            ctx.logger.warning(
                "endpoint %s: VMs discovered without their tags: %s", endpoint.name, exc
            )
        else:
            inv.vms = [
                dataclasses.replace(vm, tags=tuple(tagged.get(vm.moref, ()))) for vm in inv.vms
            ]
        for reason in inv.skipped:
            ctx.logger.warning("endpoint %s: VM skipped: %s", endpoint.name, reason)
        return inv

    def discover(self, endpoint: EndpointInfo | None, ctx: PluginContext) -> list[AssetInfo]:
        """Every VM of the endpoint as an asset of kind ``vm``."""
        inv = self.inventory(self._endpoint(endpoint), ctx)
        return [vm_asset(vm) for vm in inv.vms]

    def backup(self, request: BackupRequest, sink: BackupSink, ctx: PluginContext) -> BackupResult:
        """A backup of one VM: snapshot, base disks read over HTTPS, snapshot removed.

        CBT is turned on when it is off; a full reads the allocated areas, an
        incremental the areas changed since the previous point's change ids.
        """
        settings = connection_settings(self._endpoint(request.endpoint), ctx)
        return backup_vm(settings, request, sink, ctx)

    def restore_options(self) -> list[OptionSpec]:
        """Options of a restore: ``mode`` (vm, disk or download), ``vm_name``, ``host``,
        ``datastore``, ``network``, ``resource_pool``, ``power_on`` (see docs/plugins/vmware.md)."""
        return list(RESTORE_OPTIONS)

    def restore(
        self, request: RestoreRequest, source: RestoreSource, ctx: PluginContext
    ) -> RestoreResult:
        """Restore a recovery point of a VM, as ``request.options["mode"]`` says.

        - ``vm`` (the default without a target folder): a new VM from the stored
          configuration, under its original or a new name, host, datastore and
          networks, with a new instance UUID, powered off unless ``power_on``. A VM of
          that name is replaced only with ``overwrite="always"``.
        - ``disk``: the selected disks (``request.paths``) uploaded beside the existing
          VM ``vm_name`` and attached to free SCSI slots.
        - ``download`` (the default with a target folder): each disk as a sparse flat
          VMDK (``<name>-flat.vmdk``, a raw image) and its descriptor.

        Names, host, datastores (free space included), networks and slots are checked
        before anything is uploaded; what a failed restore uploaded or created is
        removed again. Progress counts the restored bytes.
        """
        settings = None
        if request.endpoint is not None:
            settings = connection_settings(request.endpoint, ctx)
        return restore_vm(settings, request, source, ctx)
