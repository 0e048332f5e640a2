"""vSphere tags from vCenter's vAPI REST service (govmomi's vapi simulator inside vcsim):
discovery puts them on the assets, and a job's tag rule selects by them."""

from __future__ import annotations

import base64
import json
import logging
import ssl
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from vcsim_server import Vcsim

from tapir.appliance.plugin_api import EndpointInfo, PluginContext
from tapir.plugins.vmware.role import VmwarePlugin

from .vm_disks import find_vm


class VapiClient:
    """What an administrator's tooling does: create categories and tags, attach them."""

    def __init__(self, vcsim: Vcsim) -> None:
        self.base = f"https://{vcsim.host}:{vcsim.port}/rest/com/vmware/cis"
        self.context = ssl.create_default_context(cafile=str(vcsim.cert_file))
        basic = base64.b64encode(f"{vcsim.username}:{vcsim.password}".encode()).decode()
        self.session = self.call("POST", "/session", headers={"Authorization": f"Basic {basic}"})
        self.categories: dict[str, str] = {}

    def call(self, method: str, path: str, body: Any = None, headers: dict | None = None) -> Any:
        request = urllib.request.Request(
            self.base + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        if hasattr(self, "session"):
            request.add_header("vmware-api-session-id", self.session)
        with urllib.request.urlopen(request, context=self.context) as response:
            raw = response.read()
        return json.loads(raw)["value"] if raw else None

    def tag(self, category: str, name: str) -> str:
        if category not in self.categories:
            spec = {"name": category, "cardinality": "MULTIPLE", "associable_types": []}
            self.categories[category] = self.call(
                "POST", "/tagging/category", {"create_spec": spec}
            )
        category_id = self.categories[category]
        return str(
            self.call(
                "POST",
                "/tagging/tag",
                {"create_spec": {"name": name, "category_id": category_id, "description": ""}},
            )
        )

    def attach(self, tag_id: str, vm_moref: str) -> None:
        self.call(
            "POST",
            f"/tagging/tag-association/id:{tag_id}?~action=attach",
            {"object_id": {"id": vm_moref, "type": "VirtualMachine"}},
        )


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


@pytest.fixture
def tagged(vcsim: Vcsim, vsphere: Any) -> Iterator[tuple[str, str]]:
    """DC0_H0_VM0 tagged Backup:Gold; DC0_H0_VM1 tagged Backup:Silver and Owner:web."""
    vapi = VapiClient(vcsim)
    gold = vapi.tag("Backup", "Gold")
    vapi.attach(gold, find_vm(vsphere, "DC0_H0_VM0")._moId)
    vapi.attach(vapi.tag("Backup", "Silver"), find_vm(vsphere, "DC0_H0_VM1")._moId)
    vapi.attach(vapi.tag("Owner", "web"), find_vm(vsphere, "DC0_H0_VM1")._moId)
    yield "DC0_H0_VM0", "DC0_H0_VM1"


def test_discovery_puts_vsphere_tags_on_the_assets(vcsim: Vcsim, tagged: tuple[str, str]) -> None:
    assets = {a.name: a for a in VmwarePlugin().discover(endpoint(vcsim), context(vcsim))}
    gold, silver = tagged
    assert assets[gold].metadata["tags"] == ["Backup:Gold", "Gold"]
    assert assets[silver].metadata["tags"] == ["Backup:Silver", "Owner:web", "Silver", "web"]
    untagged = [a for name, a in assets.items() if name not in tagged]
    assert untagged and all(a.metadata["tags"] == [] for a in untagged)


def test_a_tag_rule_selects_by_vsphere_tag(
    vcsim: Vcsim, tagged: tuple[str, str], tmp_path: Path
) -> None:
    from tapir.appliance import security
    from tapir.appliance.catalog.database import Catalog
    from tapir.appliance.config import Settings
    from tapir.appliance.engine.service import Appliance
    from tapir.appliance.plugin_manager import load_plugins
    from tapir.plugins.disk import plugin as disk_plugin
    from tapir.plugins.vmware import plugin as vmware_plugin

    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    catalog.upgrade()
    settings = Settings(home=tmp_path / "home", database_url=catalog.url)
    security.create_master_key(settings)
    app = Appliance(settings, catalog, load_plugins(extra=[vmware_plugin, disk_plugin]))
    try:
        app.create_pool("default", "disk", path=tmp_path / "pool")
        app.register_endpoint(
            "vc",
            "vmware",
            vcsim.address,
            options={"user": vcsim.username, "fingerprint": vcsim.fingerprint},
            password=vcsim.password,
        )
        app.create_job(
            "gold",
            "vmware",
            "default",
            endpoint="vc",
            selection={"include": ["tag=Backup:Gold", "tag=web"], "exclude": []},
        )
        records = app.preview_selection("gold", discover=True).as_records()
        selected = {r["name"]: r["rule"] for r in records if r["selected"]}
        assert selected == {"DC0_H0_VM0": "tag=Backup:Gold", "DC0_H0_VM1": "tag=web"}
    finally:
        app.close()


def test_without_a_tagging_service_discovery_goes_on_without_tags(
    vcsim: Vcsim, caplog: pytest.LogCaptureFixture
) -> None:
    info = endpoint(vcsim)
    # A wrong vAPI password is what an ESXi host without vAPI looks like to discovery:
    # the tag service cannot be used, the inventory must still arrive.
    from tapir.plugins.vmware import tags

    def refused(settings: Any) -> dict[str, list[str]]:
        raise tags.TagServiceUnavailable("the vAPI login was refused (HTTP 401)")

    plugin = VmwarePlugin()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("tapir.plugins.vmware.role.vm_tags", refused)
        with caplog.at_level(logging.WARNING):
            assets = plugin.discover(info, context(vcsim))
    assert assets and all(a.metadata["tags"] == [] for a in assets)
    assert "VMs discovered without their tags: the vAPI login was refused" in caplog.text
