"""Checkpoints Tapir creates on a domain: naming, finding, and removing the stale ones.

A checkpoint is a persistent dirty bitmap in each qcow2 disk. A recovery point
records the checkpoint created with it; the next incremental reads what changed
since that checkpoint. Only checkpoints named ``tapir-...`` are ever touched.
"""

from __future__ import annotations

import contextlib
import secrets
from datetime import UTC, datetime

import libvirt

from tapir.appliance.plugin_api import PluginContext

from .connection import describe

PREFIX = "tapir-"


def new_name() -> str:
    """A fresh, sortable checkpoint name."""
    return f"{PREFIX}{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"


def names(dom: libvirt.virDomain) -> list[str]:
    """Tapir's checkpoints on the domain."""
    return sorted(c.getName() for c in dom.listAllCheckpoints() if c.getName().startswith(PREFIX))


def delete(dom: libvirt.virDomain, name: str, ctx: PluginContext, *, metadata_only: bool) -> None:
    """Delete one checkpoint; a broken one (bitmaps lost) only from libvirt's metadata."""
    try:
        checkpoint = dom.checkpointLookupByName(name)
    except libvirt.libvirtError:
        return
    flags = libvirt.VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY if metadata_only else 0
    try:
        checkpoint.delete(flags)
    except libvirt.libvirtError as exc:
        if metadata_only:
            ctx.logger.warning(
                "checkpoint %s of %s not removed: %s", name, dom.name(), describe(exc)
            )
            return
        # Bitmaps already gone from the disks: forget the checkpoint all the same.
        with contextlib.suppress(libvirt.libvirtError):
            checkpoint.delete(libvirt.VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY)


def remove_stale(dom: libvirt.virDomain, keep: set[str], ctx: PluginContext) -> list[str]:
    """Delete Tapir's checkpoints not in ``keep``; returns their names.

    Deleting a checkpoint merges its bitmap into the previous one, so newer
    checkpoints keep tracking every change.
    """
    removed = []
    for name in names(dom):
        if name not in keep:
            delete(dom, name, ctx, metadata_only=False)
            removed.append(name)
    return removed


def forget_all(dom: libvirt.virDomain, ctx: PluginContext) -> list[str]:
    """Drop every Tapir checkpoint from libvirt's metadata (after they were found broken)."""
    found = names(dom)
    for name in found:
        delete(dom, name, ctx, metadata_only=True)
    return found
