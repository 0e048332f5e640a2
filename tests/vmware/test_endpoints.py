"""A vCenter (vcsim) in the appliance: registered, tested, its changing inventory discovered."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from vcsim_server import Vcsim

from tapir.appliance.catalog.models import Asset, Secret
from tapir.appliance.cli.main import build_cli
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_api import ConnectionFailed
from tapir.appliance.plugin_manager import load_plugins
from tapir.plugins.disk import plugin as disk_plugin
from tapir.plugins.vmware import plugin as vmware_plugin

from .inventory_changes import create_vm, remove_vm, rename_vm

MakeApp = Callable[[], Appliance]


def register(app: Appliance, vcsim: Vcsim, name: str = "vc", **changes: Any) -> None:
    options: dict[str, Any] = {"user": vcsim.username, "fingerprint": vcsim.fingerprint}
    password = changes.pop("password", vcsim.password)
    options.update(changes)
    app.register_endpoint(name, "vmware", vcsim.address, options=options, password=password)


def assets(app: Appliance, name: str = "vc") -> dict[str, Asset]:
    return {a.external_id: a for a in app.endpoint_assets(name)}


def test_register_test_and_discover(vcsim: Vcsim, make_appliance: MakeApp) -> None:
    app = make_appliance()
    register(app, vcsim)
    row = app.endpoint("vc")
    assert row.options["password_secret"] == "endpoint:vc"
    with app.catalog.session() as s:
        sealed = s.scalar(select(Secret.sealed).where(Secret.name == "endpoint:vc"))
    assert sealed is not None and vcsim.password.encode() not in sealed
    app.close()
    db = Path(app.catalog.url.split("///", 1)[1])
    for file in db.parent.glob(db.name + "*"):  # the database and its WAL
        assert vcsim.password.encode() not in file.read_bytes()
    app.test_endpoint("vc")
    report = app.discover_endpoint("vc")
    assert report.found == len(report.added) == vcsim.count["vm"]
    recorded = assets(app)
    assert len(recorded) == vcsim.count["vm"]
    assert all(a.present and a.kind == "vm" and a.plugin == "vmware" for a in recorded.values())
    assert app.endpoint("vc").last_discovery_at is not None


def test_bad_password_and_wrong_fingerprint_fail_clearly(
    vcsim: Vcsim, make_appliance: MakeApp
) -> None:
    app = make_appliance()
    register(app, vcsim, "badpw", password="not-the-password")
    register(app, vcsim, "badcert", fingerprint="00" * 32)
    with pytest.raises(ConnectionFailed, match="wrong user name or password"):
        app.test_endpoint("badpw")
    with pytest.raises(ConnectionFailed, match="does not match the pinned fingerprint"):
        app.discover_endpoint("badcert")
    # A failed discovery records nothing.
    assert app.endpoint_assets("badcert") == []
    assert app.endpoint("badcert").last_discovery_at is None


def test_changing_inventory_is_reflected(
    vcsim: Vcsim, vsphere: Any, make_appliance: MakeApp
) -> None:
    app = make_appliance()
    register(app, vcsim)
    app.discover_endpoint("vc")
    before = assets(app)
    by_name = {a.name: a for a in before.values()}
    removed_id = by_name["DC0_H0_VM0"].external_id
    renamed_id = by_name["DC0_C0_RP0_VM1"].external_id

    new_vm = create_vm(vsphere, "tomorrows-vm")
    remove_vm(vsphere, "DC0_H0_VM0")
    rename_vm(vsphere, "DC0_C0_RP0_VM1", "db-server")

    report = app.discover_endpoint("vc")
    assert report.added == ["tomorrows-vm"]
    assert report.gone == ["DC0_H0_VM0"]
    assert report.renamed == [("DC0_C0_RP0_VM1", "db-server")]
    after = assets(app)
    assert len(after) == len(before) + 1  # the removed VM's row stays
    assert after[new_vm.config.instanceUuid].present
    assert after[new_vm.config.instanceUuid].meta["power_state"] == "poweredOff"
    assert not after[removed_id].present
    assert after[renamed_id].name == "db-server" and after[renamed_id].present
    assert after[renamed_id].id == before[renamed_id].id  # same asset, same backups
    # A third discovery changes nothing.
    again = app.discover_endpoint("vc")
    assert (again.added, again.gone, again.renamed) == ([], [], [])


def test_vcenter_gone_between_discoveries_keeps_the_catalog(
    vcsim: Vcsim, make_appliance: MakeApp
) -> None:
    app = make_appliance()
    register(app, vcsim)
    app.discover_endpoint("vc")
    vcsim.stop()
    with pytest.raises(ConnectionFailed, match="connection refused"):
        app.discover_endpoint("vc")
    # Unreachable is not "every VM deleted": nothing is marked gone.
    assert all(a.present for a in app.endpoint_assets("vc"))


def test_cli_against_vcsim(vcsim: Vcsim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAPIR_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TAPIR_DATABASE_URL", raising=False)

    def tapir(*args: str) -> Any:
        # `tapir init` creates the default disk pool, so the disk plugin is loaded too.
        registry = load_plugins(extra=[vmware_plugin, disk_plugin], entry_points=False)
        cli = build_cli(registry)
        return CliRunner().invoke(cli, list(args), catch_exceptions=False)

    assert tapir("init").exit_code == 0
    pw = tmp_path / "pw"
    pw.write_text(vcsim.password + "\n")
    common = ["--plugin", "vmware", "--address", vcsim.address, "--user", vcsim.username]
    result = tapir(
        "endpoint", "add", "vc", *common, "--password-file", str(pw),
        "--fingerprint", vcsim.fingerprint,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    bad = tmp_path / "bad"
    bad.write_text("wrong\n")
    tapir("endpoint", "add", "vc-bad", *common, "--password-file", str(bad), "--no-verify-tls")

    listed = json.loads(tapir("endpoint", "list", "--json").stdout)
    assert [e["name"] for e in listed] == ["vc", "vc-bad"]
    assert listed[1]["options"]["verify_tls"] is False
    assert vcsim.password not in tapir("endpoint", "list", "--json").stdout

    ok = tapir("endpoint", "test", "vc")
    assert ok.exit_code == 0 and "connection ok" in ok.stdout
    failed = tapir("endpoint", "test", "vc-bad")
    assert failed.exit_code == 1
    assert "error:" in failed.stderr and "wrong user name or password" in failed.stderr

    found = json.loads(tapir("endpoint", "discover", "vc", "--json").stdout)
    assert found["found"] == len(found["added"]) == vcsim.count["vm"]
    # Without the --json flag, people get a summary.
    text = tapir("endpoint", "discover", "vc").stdout
    assert f"found: {vcsim.count['vm']}" in " ".join(text.split())
