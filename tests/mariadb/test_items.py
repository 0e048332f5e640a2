"""Single database and table restore from the logical dumps taken with the backups."""

from __future__ import annotations

import pytest

from tapir.appliance.plugin_api import PluginError

from .test_pitr import point, write


def _fill(server) -> None:
    write(server, "one")
    write(server, "two")
    server.execute("INSERT INTO shop.customers VALUES (1, 'Ada'), (2, 'Grace')")


def test_a_database_restores_under_another_name(app, job, server):
    _fill(server)
    full = point(app, job, "full")
    assert [d["database"] for d in full.meta["chain"]["dumps"]] == ["shop"]
    server.execute("DELETE FROM shop.orders")
    app.restore(full.id, in_place=True, options={"item": "shop", "target_database": "shop_copy"})
    assert server.execute("SELECT item FROM shop_copy.orders ORDER BY id") == [("one",), ("two",)]
    assert len(server.execute("SELECT * FROM shop_copy.customers")) == 2
    assert server.execute("SELECT COUNT(*) FROM shop.orders") == [(0,)]  # the original untouched


def test_one_table_restores_alone_and_an_existing_one_is_kept_unless_told(app, job, server):
    _fill(server)
    full = point(app, job, "full")
    # Incremental and log points carry the full's dump unchanged.
    write(server, "three")
    logs = point(app, job, "log")
    server.execute("DROP TABLE shop.orders")
    server.execute("UPDATE shop.customers SET name = 'changed'")
    app.restore(logs.id, in_place=True, options={"item": "shop.orders"})
    assert server.execute("SELECT item FROM shop.orders ORDER BY id") == [("one",), ("two",)]
    # Only that table: the other one keeps its current rows.
    assert server.execute("SELECT DISTINCT name FROM shop.customers") == [("changed",)]
    with pytest.raises(PluginError, match="already exists"):
        app.restore(full.id, in_place=True, options={"item": "shop.customers"})
    assert server.execute("SELECT DISTINCT name FROM shop.customers") == [("changed",)]
    app.restore(full.id, in_place=True, overwrite="always", options={"item": "shop.customers"})
    assert server.execute("SELECT name FROM shop.customers ORDER BY id") == [("Ada",), ("Grace",)]


def test_an_item_without_a_dump_is_refused_clearly(app, server):
    app.discover_endpoint("db1")
    app.create_job(
        "nodump",
        "mariadb",
        "default",
        selection={"assets": ["db1"]},
        endpoint="db1",
        options={"dump": "never"},
    )
    _fill(server)
    full = point(app, "nodump", "full")
    with pytest.raises(PluginError, match="no logical dump of 'shop'"):
        app.restore(full.id, in_place=True, options={"item": "shop.orders"})


def test_a_table_restores_from_a_dump_with_views_routines_and_triggers(app, job, server):
    _fill(server)
    server.execute("CREATE VIEW shop.big_orders AS SELECT * FROM shop.orders WHERE id > 1")
    server.execute("CREATE PROCEDURE shop.count_orders() SELECT COUNT(*) FROM shop.orders")
    server.execute("CREATE TABLE shop.audit (n INT)")
    server.execute(
        "CREATE TRIGGER shop.customers_ins AFTER INSERT ON shop.customers "
        "FOR EACH ROW INSERT INTO shop.audit VALUES (NEW.id)"
    )
    full = point(app, job, "full")
    server.execute("DROP TABLE shop.customers")  # its trigger goes with it
    app.restore(full.id, in_place=True, options={"item": "shop.customers"})
    assert server.execute("SELECT name FROM shop.customers ORDER BY id") == [("Ada",), ("Grace",)]
    # The table's trigger came back with it; the view and the procedure were left alone.
    server.execute("INSERT INTO shop.customers VALUES (3, 'Edsger')")
    assert server.execute("SELECT n FROM shop.audit") == [(3,)]
    assert server.execute("SELECT COUNT(*) FROM shop.big_orders") == [(1,)]
