"""A PostgreSQL server as an endpoint: login, discovery of the cluster and its databases."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pg_server import PgServer

from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_api import ConnectionFailed
from tapir.appliance.plugin_manager import load_plugins

from .conftest import register


def test_discovery_finds_the_cluster_and_its_databases(
    app: Appliance, pg: PgServer, sql: Callable[..., list[tuple]]
) -> None:
    sql("CREATE DATABASE shop")
    sql("CREATE TABLE big AS SELECT g FROM generate_series(1, 100000) g", dbname="shop")
    app.test_endpoint("db1")
    report = app.discover_endpoint("db1")
    assets = {a.name: a for a in app.endpoint_assets("db1")}
    assert report.found == 3 == len(assets)
    cluster = assets[f"127.0.0.1:{pg.port}"]
    sysid = sql("SELECT system_identifier::text FROM pg_control_system()")[0][0]
    assert cluster.kind == "postgresql-cluster" and cluster.external_id == sysid
    meta = cluster.meta
    assert meta["version"].startswith(str(meta["version_num"] // 10000))
    assert meta["data_checksums"] is True and meta["wal_level"] == "replica"
    assert meta["databases"] == ["postgres", "shop"]
    assert meta["connection"]["options"]["password_secret"] == "endpoint:db1"
    shop = assets["shop"]
    assert shop.kind == "postgresql-database" and shop.external_id == f"{sysid}/shop"
    (size,) = sql("SELECT pg_database_size('shop')")[0]
    assert shop.meta["size"] == size > assets["postgres"].meta["size"]
    assert meta["size"] == shop.meta["size"] + assets["postgres"].meta["size"]


def test_wrong_password_fails_clearly_and_records_nothing(app: Appliance, pg: PgServer) -> None:
    register(app, pg, "bad", password="not-the-password")
    with pytest.raises(ConnectionFailed, match="wrong user name or password for 'tapir'"):
        app.test_endpoint("bad")
    with pytest.raises(ConnectionFailed, match="wrong user name or password"):
        app.discover_endpoint("bad")
    assert app.endpoint_assets("bad") == []


def test_backup_with_wrong_password_fails_without_a_point(app: Appliance, pg: PgServer) -> None:
    register(app, pg, "bad", password="not-the-password")
    app.create_job("cluster", "postgresql", "default", endpoint="bad")
    run = app.run_job("cluster")
    assert run.state == "failed"
    assert "wrong user name or password" in (run.error or "") + " ".join(
        m for _, _, m in app.run_log(run.id)
    )
    assert app.recovery_points(job="cluster") == []


def test_tls_options_reach_the_server(app: Appliance, pg: PgServer) -> None:
    # The test server has no certificate: requiring TLS must fail, and say why.
    register(app, pg, "tls", sslmode="require")
    with pytest.raises(ConnectionFailed, match="SSL"):
        app.test_endpoint("tls")


def test_server_down_is_a_connection_failure(app: Appliance, pg: PgServer) -> None:
    pg.kill()
    with pytest.raises(ConnectionFailed, match=f"127.0.0.1:{pg.port}"):
        app.test_endpoint("db1")


def test_the_plugin_loads_through_its_entry_point() -> None:
    registry = load_plugins()
    assert not [f for f in registry.failures if "postgresql" in str(f)]
    plugin = registry.source_plugin("postgresql")
    assert {"log", "point-in-time", "item-restore", "quiesce"} <= plugin.capabilities()
    assert {o.name for o in plugin.restore_options()} >= {
        "target_time",
        "target_lsn",
        "target_name",
    }
