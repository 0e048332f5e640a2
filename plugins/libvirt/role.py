"""The ``libvirt`` hypervisor role: KVM/QEMU hosts through libvirt.

Endpoints are libvirt URIs; backups use libvirt's pull-mode backup API with
checkpoints for incrementals (see :mod:`.backup`); restores write disk images and
can define the domain again (see :mod:`.restore`).
"""

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

from .backup import backup_domain
from .connection import connect
from .events import watch_domains
from .inventory import discover_domains
from .options import ENDPOINT_OPTIONS, JOB_OPTIONS, RESTORE_OPTIONS, connection_settings
from .restore import restore_domain


class LibvirtPlugin(HypervisorPlugin):
    """KVM/QEMU domains of a libvirt host (``qemu:///system``, ``qemu+ssh://``, ``qemu+tls://``)."""

    name = "libvirt"
    title = "KVM / QEMU through libvirt"

    def endpoint_options(self) -> list[OptionSpec]:
        """SASL credentials, how the NBD export is reached, where scratch files go."""
        return list(ENDPOINT_OPTIONS)

    def job_options(self) -> list[OptionSpec]:
        """``quiesce``: freeze the guest's file systems through qemu-guest-agent."""
        return list(JOB_OPTIONS)

    def restore_options(self) -> list[OptionSpec]:
        """``format`` (qcow2, raw), ``define``, ``name``, ``new_identity``."""
        return list(RESTORE_OPTIONS)

    def capabilities(self) -> set[str]:
        """Checkpoint incrementals and guest-agent quiescing."""
        return {"incremental", "quiesce"}

    def _endpoint(self, endpoint: EndpointInfo | None) -> EndpointInfo:
        if endpoint is None:
            raise PluginError("the libvirt plugin needs an endpoint (a libvirt URI)")
        return endpoint

    def test_connection(self, endpoint: EndpointInfo, ctx: PluginContext) -> None:
        """Connect once and report the host and versions; ConnectionFailed with the reason."""
        settings = connection_settings(self._endpoint(endpoint), ctx)
        with connect(settings) as conn:
            ctx.logger.info(
                "connected to %s: host %s, %s %d, libvirt %d",
                settings.uri,
                conn.getHostname(),
                conn.getType(),
                conn.getVersion(),
                conn.getLibVersion(),
            )

    def discover(self, endpoint: EndpointInfo | None, ctx: PluginContext) -> list[AssetInfo]:
        """Every domain of the host as an asset of kind ``vm`` (external id: its UUID)."""
        settings = connection_settings(self._endpoint(endpoint), ctx)
        with connect(settings) as conn:
            return discover_domains(conn, ctx)

    def watch(
        self, endpoint: EndpointInfo, ctx: PluginContext, on_change: Callable[[], None]
    ) -> None:
        """Follow the host's domain lifecycle events (defined, undefined, started...).

        Each event makes the appliance rediscover the endpoint at once, so a new
        domain is registered within seconds instead of at the next scheduled
        discovery. Ends with ConnectionFailed when the host goes away.
        """
        watch_domains(connection_settings(self._endpoint(endpoint), ctx), ctx, on_change)

    def backup(self, request: BackupRequest, sink: BackupSink, ctx: PluginContext) -> BackupResult:
        """A full or incremental (checkpoint) backup of one running domain."""
        settings = connection_settings(self._endpoint(request.endpoint), ctx)
        return backup_domain(settings, request, sink, ctx)

    def restore(
        self, request: RestoreRequest, source: RestoreSource, ctx: PluginContext
    ) -> RestoreResult:
        """Disk images into ``request.target``; ``define=true`` defines the domain again."""
        settings = (
            connection_settings(request.endpoint, ctx) if request.endpoint is not None else None
        )
        return restore_domain(settings, request, source, ctx)
