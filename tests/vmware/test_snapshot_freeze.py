"""A VMware job that freezes the applications inside its VM around the snapshot (issue #9).

The application plugin is a small one defined here: its freeze and thaw ask the real
vcsim how many snapshots it has been asked for at that moment, which proves that the
snapshot was taken between the two.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from vcsim_server import Vcsim

from tapir.appliance.cli.main import build_cli
from tapir.appliance.engine import snapshot_freeze
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_api import (
    ApplicationPlugin,
    AssetInfo,
    BackupRequest,
    BackupResult,
    EndpointInfo,
    PluginContext,
    PluginError,
    hookimpl,
)

from .appliances import vcsim_appliance
from .vm_disks import MiB, disk_bytes, prepare_disk, snapshot_names

VM = "DC0_H0_VM0"
SNAPSHOTS = "CreateSnapshot_Task"


class GuestDatabases(ApplicationPlugin):
    """Two databases inside the VM; freeze/thaw note how many snapshots vcsim was asked for."""

    name = "guestdb"
    title = "Databases in the guest (test)"

    def __init__(self, vcsim: Vcsim) -> None:
        self.vcsim = vcsim
        self.refuse: set[str] = set()
        self.hang: dict[str, threading.Event] = {}  # asset -> released by the test
        self.thawed = threading.Event()
        self.calls: list[tuple[str, str, int]] = []  # (call, asset, snapshots so far)
        self._lock = threading.Lock()

    def _note(self, call: str, asset: AssetInfo) -> None:
        taken = self.vcsim.soap_calls().get(SNAPSHOTS, 0)
        with self._lock:
            self.calls.append((call, asset.name, taken))

    def discover(self, endpoint: EndpointInfo | None, ctx: PluginContext) -> list[AssetInfo]:
        return [AssetInfo("database", n, f"db-{n}") for n in ("orders", "stock")]

    def freeze(self, asset: AssetInfo, ctx: PluginContext) -> None:
        self._note("freeze", asset)
        if asset.name in self.refuse:
            raise PluginError(f"{asset.name}: a transaction holds the lock")
        if asset.name in self.hang:
            self.hang[asset.name].wait()

    def thaw(self, asset: AssetInfo, ctx: PluginContext) -> None:
        self._note("thaw", asset)
        self.thawed.set()

    def backup(self, request: BackupRequest, sink: Any, ctx: PluginContext) -> BackupResult:
        raise PluginError("not backed up in these tests")

    def restore(self, request: Any, source: Any, ctx: PluginContext) -> Any:
        raise PluginError("not restored in these tests")


class _Registration:
    __name__ = "guestdb_test_plugin"

    def __init__(self, plugin: GuestDatabases) -> None:
        self.plugin = plugin

    @hookimpl
    def tapir_application_plugins(self) -> list[ApplicationPlugin]:
        return [self.plugin]


@pytest.fixture
def guestdb(vcsim: Vcsim) -> GuestDatabases:
    return GuestDatabases(vcsim)


@pytest.fixture
def app(tmp_path: Path, vcsim: Vcsim, guestdb: GuestDatabases) -> Iterator[Appliance]:
    """vmware, disk and the guest databases; a VM job freezing the database job ``db``."""
    appliance = vcsim_appliance(tmp_path, vcsim, extra=[_Registration(guestdb)])
    appliance.create_job("db", "guestdb", "default")
    yield appliance
    appliance.close()


def _vm_job(app: Appliance, **kwargs: Any) -> None:
    app.create_job("vms", "vmware", "default", selection={"assets": [VM]}, endpoint="vc", **kwargs)


def _log(app: Appliance, run_id: int) -> str:
    return "\n".join(f"{level} {line}" for _, level, line in app.run_log(run_id))


def test_the_snapshot_is_taken_while_the_applications_are_frozen(
    app: Appliance, vsphere: Any, guestdb: GuestDatabases
) -> None:
    disk = prepare_disk(vsphere, VM, disk_bytes(4 * MiB, seed=5))
    _vm_job(app, freeze_with=["db"])
    run = app.run_job("vms")
    assert run.state == "succeeded", run.error
    by_call = {(call, asset): taken for call, asset, taken in guestdb.calls}
    # Frozen before the only snapshot was asked for, thawed once it was taken.
    assert by_call == {
        ("freeze", "orders"): 0,
        ("freeze", "stock"): 0,
        ("thaw", "orders"): 1,
        ("thaw", "stock"): 1,
    }
    (rp,) = app.recovery_points(job="vms")
    assert rp.meta["frozen_applications"] == ["db (orders)", "db (stock)"]
    log = _log(app, run.id)
    assert "frozen for the snapshot: db (orders), db (stock)" in log
    assert "thawed after the snapshot" in log
    assert snapshot_names(vsphere, disk.vm) == []


def test_a_refused_freeze_thaws_the_others_and_the_snapshot_goes_ahead(
    app: Appliance, vsphere: Any, guestdb: GuestDatabases
) -> None:
    disk = prepare_disk(vsphere, VM, disk_bytes(4 * MiB, seed=6))
    guestdb.refuse.add("stock")
    _vm_job(app, freeze_with=["db"])
    run = app.run_job("vms")
    assert run.state == "warning", run.error
    # orders froze and was thawed before the (crash-consistent) snapshot; stock never froze.
    assert sorted(guestdb.calls) == [
        ("freeze", "orders", 0),
        ("freeze", "stock", 0),
        ("thaw", "orders", 0),
    ]
    assert vsphere_snapshots_taken(guestdb) == 1
    (rp,) = app.recovery_points(job="vms")
    assert rp.meta["frozen_applications"] == []
    assert rp.warnings == 1
    log = _log(app, run.id)
    assert "WARNING" in log and "db (stock) could not freeze" in log
    assert "a transaction holds the lock" in log and "crash-consistent" in log
    assert snapshot_names(vsphere, disk.vm) == []


def _selection(app: Appliance) -> dict[str, Any]:
    return next(dict(j.selection or {}) for j in app.jobs() if j.name == "vms")


def vsphere_snapshots_taken(guestdb: GuestDatabases) -> int:
    return guestdb.vcsim.soap_calls().get(SNAPSHOTS, 0)


def test_a_freeze_that_hangs_past_the_window_is_thawed_when_it_returns(
    app: Appliance, vsphere: Any, guestdb: GuestDatabases, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepare_disk(vsphere, VM, disk_bytes(4 * MiB, seed=7))
    monkeypatch.setattr(snapshot_freeze, "WINDOW", 0.5)
    release = guestdb.hang["stock"] = threading.Event()
    _vm_job(app, freeze_with=["db"])
    try:
        run = app.run_job("vms")
    finally:
        release.set()
    assert run.state == "warning", run.error
    assert "db (stock) did not freeze within 0.5 s" in _log(app, run.id)
    # orders was thawed before the snapshot; stock's late freeze is thawed once it returns.
    assert ("thaw", "orders", 0) in guestdb.calls
    guestdb.thawed.clear()
    if not any(c[:2] == ("thaw", "stock") for c in guestdb.calls):
        assert guestdb.thawed.wait(60)
    assert [c for c in guestdb.calls if c[:2] == ("thaw", "stock")] == [("thaw", "stock", 1)]


def test_freeze_with_names_application_jobs_only(app: Appliance) -> None:
    with pytest.raises(ValueError, match="no job named 'nope'"):
        _vm_job(app, freeze_with=["nope"])
    assert "vms" not in [j.name for j in app.jobs()]  # nothing saved
    _vm_job(app)
    with pytest.raises(ValueError, match="backs up no application"):
        app.update_job("vms", freeze_with=["vms"])
    with pytest.raises(ValueError, match="takes no hypervisor snapshot"):
        app.update_job("db", freeze_with=["db"])
    app.update_job("vms", freeze_with=["db"])
    app.set_job_rules("vms", ["name=DC0_*"], [])  # rules keep the list
    assert _selection(app)["freeze_with"] == ["db"]
    app.update_job("vms", freeze_with=[])
    assert "freeze_with" not in _selection(app)


def test_cli_sets_and_clears_freeze_with(app: Appliance) -> None:
    cli = build_cli(app.registry)
    base = ["--home", str(app.settings.home), "--database-url", app.catalog.url, "job"]

    def tapir(*args: str) -> str:
        result = CliRunner().invoke(cli, [*base, *args])
        assert result.exit_code == 0, result.output
        return result.output

    tapir(
        "create", "vms", "--plugin", "vmware", "--pool", "default", "--endpoint", "vc",
        "--asset", VM, "--freeze-with", "db",
    )  # fmt: skip
    assert _selection(app) == {"assets": [VM], "freeze_with": ["db"]}
    tapir("edit", "vms", "--no-freeze-with")
    assert _selection(app) == {"assets": [VM]}
    bad = CliRunner().invoke(cli, [*base, "edit", "vms", "--freeze-with", "vms"])
    assert bad.exit_code != 0 and "backs up no application" in bad.output
    assert _selection(app) == {"assets": [VM]}
