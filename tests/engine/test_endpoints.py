"""Endpoints in the core: registration, the sealed password, discovery bookkeeping, the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from tapir.appliance import security
from tapir.appliance.catalog.database import Catalog
from tapir.appliance.catalog.models import Asset, Endpoint, Pool, RecoveryPoint, Secret
from tapir.appliance.cli.main import build_cli
from tapir.appliance.config import Settings
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_api import (
    AssetInfo,
    ConnectionFailed,
    EndpointInfo,
    HypervisorPlugin,
    OptionSpec,
    PluginContext,
    PluginError,
    hookimpl,
)
from tapir.appliance.plugin_manager import load_plugins
from tapir.plugins.disk import plugin as disk_plugin

from .fakes import FakePlugins

PASSWORD = "Zq8-endpoint-pw"


class FakeHypervisor(HypervisorPlugin):
    """A hypervisor whose inventory the test sets; it checks the password it is given."""

    name = "fakehv"
    title = "Fake hypervisor"

    def __init__(self) -> None:
        self.vms: dict[str, str] = {}  # external id -> name
        self.seen_passwords: list[str] = []
        self.down = False

    def endpoint_options(self) -> list[OptionSpec]:
        return [
            OptionSpec("user", "str", required=True),
            OptionSpec("password_secret", "secret", required=True),
            OptionSpec("verify_tls", "bool", default=True),
            OptionSpec("fingerprint", "str"),
        ]

    def _login(self, endpoint: EndpointInfo, ctx: PluginContext) -> None:
        password = ctx.read_secret(str(endpoint.options["password_secret"]))
        self.seen_passwords.append(password)
        if self.down:
            raise ConnectionFailed(f"cannot reach {endpoint.address}: connection refused")
        if password != PASSWORD:
            raise ConnectionFailed("wrong user name or password")

    def test_connection(self, endpoint: EndpointInfo, ctx: PluginContext) -> None:
        self._login(endpoint, ctx)

    def discover(self, endpoint: EndpointInfo | None, ctx: PluginContext) -> list[AssetInfo]:
        assert endpoint is not None
        self._login(endpoint, ctx)
        return [AssetInfo("vm", n, i, {"folder": "/dc/vm"}) for i, n in self.vms.items()]

    def backup(self, request: Any, sink: Any, ctx: PluginContext) -> Any:
        raise PluginError("not implemented")

    def restore(self, request: Any, source: Any, ctx: PluginContext) -> Any:
        raise PluginError("not implemented")


class HvHooks:
    def __init__(self) -> None:
        self.plugin = FakeHypervisor()

    @hookimpl
    def tapir_hypervisor_plugins(self) -> list[HypervisorPlugin]:
        return [self.plugin]


@pytest.fixture
def hv() -> HvHooks:
    return HvHooks()


@pytest.fixture
def app(
    tmp_path: Path, sqlite_catalog: Catalog, fake_plugins: FakePlugins, hv: HvHooks
) -> Appliance:
    settings = Settings(home=tmp_path / "home", database_url=sqlite_catalog.url)
    security.create_master_key(settings)
    registry = load_plugins(extra=[fake_plugins, hv], entry_points=False)
    assert not registry.failures, registry.failures
    return Appliance(settings, sqlite_catalog, registry)


def add(app: Appliance, name: str = "vc", password: str | None = PASSWORD, **opts: Any) -> Endpoint:
    return app.register_endpoint(
        name, "fakehv", "vc.example:443", options={"user": "backup", **opts}, password=password
    )


def test_registration_seals_the_password(app: Appliance, hv: HvHooks) -> None:
    row = add(app)
    assert row.options == {"user": "backup", "password_secret": "endpoint:vc"}
    assert row.secret_name == "endpoint:vc"
    with app.catalog.session() as s:
        sealed = s.scalar(select(Secret.sealed).where(Secret.name == "endpoint:vc"))
    assert sealed and PASSWORD.encode() not in sealed
    assert app.read_secret("endpoint:vc") == PASSWORD
    app.test_endpoint("vc")
    assert hv.plugin.seen_passwords == [PASSWORD]  # through PluginContext.read_secret
    assert [e.name for e in app.endpoints()] == ["vc"]
    assert any(e.action == "endpoint.register" for e in app.audit_events())
    assert PASSWORD not in json.dumps([e.details for e in app.audit_events()])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda app: add(app, name="bad name"), "invalid endpoint name"),
        (lambda app: add(app, password=None), "needs a password"),
        (lambda app: add(app, password=""), "password is empty"),
        (lambda app: add(app, colour="red"), "no endpoint option 'colour'"),
        (lambda app: add(app, password_secret="other"), "is set by Tapir"),
        (
            lambda app: app.register_endpoint("x", "nosuch", "h", options={}, password="p"),
            "no source plugin named 'nosuch'",
        ),
        (
            lambda app: app.register_endpoint("x", "fakehv", " ", options={}, password="p"),
            "needs an address",
        ),
    ],
)
def test_bad_registrations_store_nothing(
    app: Appliance, call: Callable[[Appliance], object], message: str
) -> None:
    with pytest.raises((ValueError, KeyError), match=message):
        call(app)
    with app.catalog.session() as s:
        assert s.scalar(select(func.count(Endpoint.id))) == 0
        assert s.scalar(select(func.count(Secret.id))) == 0


def test_a_duplicate_name_keeps_the_first_endpoint(app: Appliance) -> None:
    add(app)
    with pytest.raises(ValueError, match="already exists"):
        add(app, password="another")
    assert app.read_secret("endpoint:vc") == PASSWORD
    assert len(app.endpoints()) == 1


def test_connection_failures_reach_the_caller(app: Appliance, hv: HvHooks) -> None:
    add(app, name="wrong", password="nope")
    with pytest.raises(ConnectionFailed, match="wrong user name or password"):
        app.test_endpoint("wrong")
    with pytest.raises(KeyError, match="no endpoint named 'ghost'"):
        app.test_endpoint("ghost")


def test_discovery_marks_vanished_assets_and_keeps_their_backups(
    app: Appliance, hv: HvHooks
) -> None:
    add(app)
    hv.plugin.vms = {"u1": "web", "u2": "db", "u3": "mail"}
    first = app.discover_endpoint("vc")
    assert sorted(first.added) == ["db", "mail", "web"]
    # A backup of "db" exists in a pool.
    app.create_pool("mem", "memdisk")
    with app.catalog.session() as s:
        db = s.scalar(select(Asset).where(Asset.external_id == "u2"))
        pool = s.scalar(select(Pool).where(Pool.name == "mem"))
        assert db is not None and pool is not None
        s.add(RecoveryPoint(id="rp1", asset_id=db.id, pool_id=pool.id, kind="image",
                            level="full", plugin="fakehv"))  # fmt: skip

    hv.plugin.vms = {"u1": "web-renamed", "u3": "mail", "u4": "new"}
    second = app.discover_endpoint("vc")
    assert second.added == ["new"]
    assert second.gone == ["db"]
    assert second.renamed == [("web", "web-renamed")]
    rows = {a.external_id: a for a in app.endpoint_assets("vc")}
    assert not rows["u2"].present and rows["u1"].present and rows["u4"].present
    with app.catalog.session() as s:
        assert s.get(RecoveryPoint, "rp1") is not None

    # Unreachable: an error, and nothing marked gone.
    hv.plugin.down = True
    with pytest.raises(ConnectionFailed, match="connection refused"):
        app.discover_endpoint("vc")
    assert sum(a.present for a in app.endpoint_assets("vc")) == 3

    hv.plugin.down = False
    hv.plugin.vms["u2"] = "db"
    third = app.discover_endpoint("vc")
    assert third.returned == ["db"] and third.gone == []


def test_discovery_refuses_duplicate_ids(app: Appliance, hv: HvHooks) -> None:
    add(app)

    def twice(endpoint: EndpointInfo | None, ctx: PluginContext) -> list[AssetInfo]:
        return [AssetInfo("vm", "a", "same"), AssetInfo("vm", "b", "same")]

    hv.plugin.discover = twice  # type: ignore[method-assign]
    with pytest.raises(Exception, match="twice"):
        app.discover_endpoint("vc")
    assert app.endpoint_assets("vc") == []


@pytest.fixture
def tapir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hv: HvHooks) -> Callable[..., Result]:
    monkeypatch.setenv("TAPIR_HOME", str(tmp_path / "clihome"))
    monkeypatch.delenv("TAPIR_DATABASE_URL", raising=False)

    def run(*args: str) -> Result:
        registry = load_plugins(extra=[hv, disk_plugin], entry_points=False)
        return CliRunner().invoke(build_cli(registry), list(args), catch_exceptions=False)

    assert run("init").exit_code == 0
    return run


def test_cli_add_list_test_discover(
    tapir: Callable[..., Result], tmp_path: Path, hv: HvHooks
) -> None:
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    fp = "AB:" * 31 + "AB"
    result = tapir(
        "endpoint", "add", "vc", "--plugin", "fakehv", "--address", "vc.example",
        "--user", "backup", "--password-file", str(pw), "--fingerprint", fp, "--no-verify-tls",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    listed = json.loads(tapir("endpoint", "list", "--json").stdout)
    assert listed[0]["options"] == {
        "user": "backup",
        "password_secret": "endpoint:vc",
        "fingerprint": fp,
        "verify_tls": False,
    }
    assert listed[0]["has_password"] is True
    assert "vc.example" in tapir("endpoint", "list").stdout
    assert "connection ok" in tapir("endpoint", "test", "vc").stdout
    hv.plugin.vms = {"u1": "web"}
    assert json.loads(tapir("endpoint", "discover", "vc", "--json").stdout)["added"] == ["web"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--fingerprint", "12:34"], "invalid --fingerprint"),
        (["--plugin", "nosuch"], "no source plugin named 'nosuch'"),
        (["--password-file", "EMPTY"], "is empty"),
    ],
)
def test_cli_refuses_bad_input(
    tapir: Callable[..., Result], tmp_path: Path, extra: list[str], message: str
) -> None:
    empty = tmp_path / "empty"
    empty.write_text("")
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD)
    args = ["endpoint", "add", "vc", "--plugin", "fakehv", "--address", "h", "--user", "u",
            "--password-file", str(pw)]  # fmt: skip
    args += [str(empty) if a == "EMPTY" else a for a in extra]
    result = tapir(*args)
    assert result.exit_code == 1
    assert message in result.stderr
    assert json.loads(tapir("endpoint", "list", "--json").stdout) == []


def test_cli_test_failure_exits_1(tapir: Callable[..., Result], tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("wrong")
    tapir("endpoint", "add", "vc", "--plugin", "fakehv", "--address", "h", "--user", "u",
          "--password-file", str(pw))  # fmt: skip
    result = tapir("endpoint", "test", "vc")
    assert result.exit_code == 1
    assert "error: wrong user name or password" in result.stderr


def test_a_job_names_its_endpoint_which_must_be_of_its_plugin(app: Appliance) -> None:
    add(app)
    app.create_pool("mem", "memdisk")
    with pytest.raises(KeyError, match="no endpoint named 'nope'"):
        app.create_job("j1", "fakehv", "mem", endpoint="nope")
    with pytest.raises(ValueError, match="belongs to plugin 'fakehv', not 'fakefiles'"):
        app.create_job("j2", "fakefiles", "mem", endpoint="vc")
    assert app.jobs() == []
    job = app.create_job("j3", "fakehv", "mem", endpoint="vc")
    assert job.endpoint_id == app.endpoint("vc").id
