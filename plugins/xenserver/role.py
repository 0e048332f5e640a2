"""The ``xenserver`` hypervisor role: endpoints, connection test, discovery, backup, restore."""

from __future__ import annotations

from collections.abc import Callable

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
from .events import VmEvents, vm_events
from .inventory import Inventory, VirtualMachine, collect
from .options import ENDPOINT_OPTIONS, JOB_OPTIONS, connection_settings
from .restore import restore_point

#: Seconds one event.from call of a watch may block.
WATCH_POLL = 5.0


def vm_asset(vm: VirtualMachine) -> AssetInfo:
    """The catalog's view of one VM (external id: its UUID, stable across renames)."""
    return AssetInfo(
        kind="vm",
        name=vm.name,
        external_id=vm.uuid,
        metadata={
            "folder": vm.folder,
            "host": vm.host,
            "cluster": vm.pool,
            "pool": vm.pool,
            "tags": list(vm.tags),
            "custom_attributes": dict(vm.custom_attributes),
            "power_state": vm.power_state,
            "quiesce_possible": vm.quiesce_possible,
            "disks": [d.as_dict() for d in vm.disks],
        },
    )


class XenServerPlugin(HypervisorPlugin):
    """Citrix XenServer / XCP-ng pools through the XenAPI SDK."""

    name = "xenserver"
    title = "Citrix XenServer / XCP-ng"

    def endpoint_options(self) -> list[OptionSpec]:
        """address, user, password (a secret name), verify_tls, fingerprint, ca_file, timeout."""
        return list(ENDPOINT_OPTIONS)

    def job_options(self) -> list[OptionSpec]:
        """``quiesce`` (VSS snapshot where allowed) and ``cbt`` (incrementals, default on)."""
        return list(JOB_OPTIONS)

    def capabilities(self) -> set[str]:
        """Incrementals through CBT and quiesced snapshots where the VM allows them."""
        return {"incremental", "quiesce"}

    def _endpoint(self, endpoint: EndpointInfo | None) -> EndpointInfo:
        if endpoint is None:
            raise PluginError("the xenserver plugin needs an endpoint (a pool master)")
        return endpoint

    def test_connection(self, endpoint: EndpointInfo, ctx: PluginContext) -> None:
        """Log in (following HOST_IS_SLAVE) and out once; raises ConnectionFailed."""
        settings = connection_settings(self._endpoint(endpoint), ctx)
        with connection.session(settings) as conn:
            pool = conn.api.pool.get_all()[0]
            name = conn.api.pool.get_name_label(pool)
            ctx.logger.info("connected to pool %r at %s", name, conn.settings.address)

    def inventory(self, endpoint: EndpointInfo, ctx: PluginContext) -> Inventory:
        """Hosts, SRs and VMs of the pool."""
        settings = connection_settings(self._endpoint(endpoint), ctx)
        with connection.session(settings) as conn:
            return collect(conn.api)

    def discover(self, endpoint: EndpointInfo | None, ctx: PluginContext) -> list[AssetInfo]:
        """Every VM of the pool (no templates, control domains or snapshots) as a ``vm``."""
        return [vm_asset(vm) for vm in self.inventory(self._endpoint(endpoint), ctx).vms]

    def poll_events(
        self, endpoint: EndpointInfo, ctx: PluginContext, token: str = "", timeout: float = 30.0
    ) -> VmEvents:
        """One ``event.from`` call: blocks until VMs change or ``timeout`` passes.

        Pass the returned ``token`` to the next call; the first call (empty token)
        answers every current VM.
        """
        settings = connection_settings(self._endpoint(endpoint), ctx)
        with connection.session(settings) as conn:
            return vm_events(conn, token, timeout)

    def watch(
        self, endpoint: EndpointInfo, ctx: PluginContext, on_change: Callable[[], None]
    ) -> None:
        """Follow the pool's VM events with ``event.from``; ``on_change()`` at each change.

        The appliance then rediscovers the endpoint at once, so a new VM is
        registered within seconds; the scheduled discovery stays as the resync.
        Runs until ``ctx.check_canceled()`` raises; a lost connection ends it with
        the connection's error and the appliance restarts the watch later.
        """
        settings = connection_settings(self._endpoint(endpoint), ctx)
        with connection.session(settings) as conn:
            token = ""
            while True:
                ctx.check_canceled()
                # Short calls: cancellation is seen within WATCH_POLL seconds.
                events = vm_events(conn, token, WATCH_POLL)
                # The first answer lists every VM: what changed while nobody watched.
                if events.any or not token:
                    on_change()
                token = events.token

    def backup(self, request: BackupRequest, sink: BackupSink, ctx: PluginContext) -> BackupResult:
        """Snapshot, export each VDI (whole or changed blocks), keep CBT metadata, clean up."""
        settings = connection_settings(self._endpoint(request.endpoint), ctx)
        return backup_vm(settings, request, sink, ctx)

    def restore(
        self, request: RestoreRequest, source: RestoreSource, ctx: PluginContext
    ) -> RestoreResult:
        """Image files into a target folder, else a new VM (or one disk into a VM)."""
        settings = (
            connection_settings(request.endpoint, ctx) if request.endpoint is not None else None
        )
        return restore_point(settings, request, source, ctx)
