"""Logical dumps on their own job (mode=logical) and single database / table restore."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from pg_server import PgServer

from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_api import PluginError

SQL = Callable[..., list[tuple]]


@pytest.fixture
def dumps(app: Appliance, sql: SQL) -> dict[str, str]:
    """A dump of each database of the server: recovery point ids by database."""
    sql("CREATE DATABASE shop")
    sql("CREATE TABLE items (id int PRIMARY KEY, name text)", dbname="shop")
    sql("CREATE SCHEMA stock", dbname="shop")
    sql("CREATE TABLE stock.levels (id int, qty int)", dbname="shop")
    sql("INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 500) g", dbname="shop")
    sql("INSERT INTO stock.levels VALUES (1, 10), (2, 20)", dbname="shop")
    app.create_job("dumps", "postgresql", "default", endpoint="db1", options={"mode": "logical"})
    run = app.run_job("dumps")
    assert run.state == "succeeded", run.error
    # Restoring into the server runs as the endpoint's user: it creates databases and
    # replaces the tables it owns (docs/plugins/postgresql.md, privileges).
    sql("ALTER ROLE tapir CREATEDB")
    sql("ALTER TABLE stock.levels OWNER TO tapir", dbname="shop")
    sql("GRANT CREATE ON SCHEMA stock TO tapir", dbname="shop")
    points = {p.asset.name: p for p in app.recovery_points(job="dumps")}
    assert set(points) == {"postgres", "shop"}
    assert points["shop"].meta["type"] == "dump" and points["shop"].meta["database"] == "shop"
    return {name: p.id for name, p in points.items()}


def test_missing_privileges_are_reported(app: Appliance, dumps: dict[str, str], sql: SQL) -> None:
    sql("ALTER ROLE tapir NOCREATEDB")
    with pytest.raises(PluginError, match="permission denied to create database"):
        app.restore(dumps["shop"], in_place=True, options={"into_database": "elsewhere"})
    assert sql("SELECT count(*) FROM pg_database WHERE datname = 'elsewhere'") == [(0,)]


def test_restore_one_table_into_another_database(
    app: Appliance, dumps: dict[str, str], sql: SQL
) -> None:
    sql("DELETE FROM items WHERE id > 10", dbname="shop")  # the accident
    app.restore(
        dumps["shop"], in_place=True, options={"item": "items", "into_database": "shop_copy"}
    )
    assert sql("SELECT count(*), max(name) FROM items", dbname="shop_copy") == [(500, "item 99")]
    # Only that table came back.
    assert sql("SELECT to_regclass('stock.levels')", dbname="shop_copy") == [(None,)]
    assert sql("SELECT count(*) FROM items", dbname="shop") == [(10,)]


def test_an_existing_table_is_refused_unless_told(
    app: Appliance, dumps: dict[str, str], sql: SQL
) -> None:
    sql("DELETE FROM stock.levels WHERE id = 2", dbname="shop")
    with pytest.raises(PluginError, match=r"table stock\.levels exists in shop"):
        app.restore(dumps["shop"], in_place=True, options={"item": "stock.levels"})
    assert sql("SELECT count(*) FROM stock.levels", dbname="shop") == [(1,)]
    app.restore(dumps["shop"], in_place=True, overwrite="always", options={"item": "stock.levels"})
    assert sql("SELECT id, qty FROM stock.levels ORDER BY id", dbname="shop") == [
        (1, 10),
        (2, 20),
    ]
    assert sql("SELECT count(*) FROM items", dbname="shop") == [(500,)]


def test_restore_a_whole_database(app: Appliance, dumps: dict[str, str], sql: SQL) -> None:
    with pytest.raises(PluginError, match="database shop already holds"):
        app.restore(dumps["shop"], in_place=True)
    app.restore(dumps["shop"], in_place=True, options={"into_database": "shop_again"})
    assert sql("SELECT count(*) FROM items", dbname="shop_again") == [(500,)]
    assert sql("SELECT sum(qty) FROM stock.levels", dbname="shop_again") == [(30,)]


def test_an_unknown_table_is_named(app: Appliance, dumps: dict[str, str], sql: SQL) -> None:
    with pytest.raises(PluginError, match=r"holds no table public\.nothing"):
        app.restore(dumps["shop"], in_place=True, options={"item": "nothing", "into_database": "x"})


def test_the_dump_file_itself(
    app: Appliance, dumps: dict[str, str], pg: PgServer, tmp_path: Path
) -> None:
    result = app.restore(dumps["shop"], target=tmp_path / "out")
    dump = tmp_path / "out" / "shop.dump"
    assert result.items_restored == 1 and dump.stat().st_size == result.bytes_restored
    listing = subprocess.run(
        [str(pg.bindir / "pg_restore"), "--list", str(dump)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "TABLE public items" in listing and "TABLE stock levels" in listing


def test_a_log_backup_of_a_database_is_refused(app: Appliance, dumps: dict[str, str]) -> None:
    run = app.run_job("dumps", level="log")
    assert run.state == "failed"
    assert len(app.recovery_points(job="dumps")) == 2
