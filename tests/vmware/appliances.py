"""An appliance the VMware tests share: vmware and disk plugins, a disk pool, vcsim
registered as endpoint ``vc`` (its certificate pinned)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vcsim_server import Vcsim

from tapir.appliance import security
from tapir.appliance.catalog.database import Catalog
from tapir.appliance.config import Settings
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_manager import load_plugins
from tapir.plugins.disk import plugin as disk_plugin
from tapir.plugins.vmware import plugin as vmware_plugin


def vcsim_appliance(
    tmp_path: Path,
    vcsim: Vcsim,
    *,
    extra: Sequence[object] = (),
    pool: str = "default",
    endpoint_options: dict[str, Any] | None = None,
) -> Appliance:
    """A fresh appliance on a SQLite catalog in ``tmp_path``; the caller closes it."""
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    catalog.upgrade()
    settings = Settings(home=tmp_path / "home", database_url=catalog.url)
    security.create_master_key(settings)
    registry = load_plugins(extra=[vmware_plugin, disk_plugin, *extra], entry_points=False)
    assert not registry.failures, registry.failures
    appliance = Appliance(settings, catalog, registry)
    appliance.create_pool(pool, "disk", path=tmp_path / "pool")
    appliance.register_endpoint(
        "vc",
        "vmware",
        vcsim.address,
        options={
            "user": vcsim.username,
            "fingerprint": vcsim.fingerprint,
            **(endpoint_options or {}),
        },
        password=vcsim.password,
    )
    return appliance
