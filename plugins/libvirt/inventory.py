"""Discovery: the domains of a libvirt host as assets, with the metadata selection rules use."""

from __future__ import annotations

import libvirt

from tapir.appliance.plugin_api import AssetInfo, PluginContext

from .connection import describe
from .domainxml import DomainXml, parse_domain

POWER_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: "nostate",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_SHUTOFF: "shutoff",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "pmsuspended",
}


def power_state(dom: libvirt.virDomain) -> str:
    """The domain's state as a word (``running``, ``shutoff``...)."""
    state, _reason = dom.state()
    return POWER_STATES.get(state, f"state-{state}")


def domain_asset(dom: libvirt.virDomain, host: str) -> AssetInfo:
    """One domain as an asset of kind ``vm`` (external id: its UUID)."""
    info: DomainXml = parse_domain(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    return AssetInfo(
        kind="vm",
        name=dom.name(),
        external_id=dom.UUIDString(),
        metadata={
            "host": host,
            "power_state": power_state(dom),
            "persistent": bool(dom.isPersistent()),
            "title": info.title,
            "tags": list(info.tags),
            "custom_attributes": dict(info.custom_attributes),
            "disks": [d.as_dict() for d in info.disks],
        },
    )


def discover_domains(conn: libvirt.virConnect, ctx: PluginContext) -> list[AssetInfo]:
    """Every domain of the host, defined or transient, running or not."""
    host = conn.getHostname()
    assets = []
    for dom in conn.listAllDomains(0):
        try:
            assets.append(domain_asset(dom, host))
        except libvirt.libvirtError as exc:
            # A domain undefined while we looked is simply gone.
            ctx.logger.warning("domain %s skipped: %s", dom.name(), describe(exc))
    return sorted(assets, key=lambda a: a.name)
