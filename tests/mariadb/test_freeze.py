"""freeze/thaw: a global read lock held on a session until thaw, and never longer than bound."""

from __future__ import annotations

import dataclasses
import logging
import time

import pymysql
import pytest

from tapir.appliance.plugin_api import AssetInfo, PluginContext, PluginError
from tapir.plugins.mariadb.role import MariaDBPlugin

from .conftest import PASSWORD, USER


def _ctx() -> PluginContext:
    return PluginContext(
        logger=logging.getLogger("test"),
        read_secret=lambda name: {"db1.password": PASSWORD}[name],
    )


def _asset(server, freeze_timeout: int) -> AssetInfo:
    connection = {
        "endpoint": "db1",
        "address": f"127.0.0.1:{server.port}",
        "user": USER,
        "password_secret": "db1.password",
        "freeze_timeout": freeze_timeout,
    }
    return AssetInfo("mariadb-server", "db1", "mariadb://test", {"connection": connection})


def _try_write(server) -> bool:
    """True when a write goes through; False when it waits on the global read lock."""
    conn = pymysql.connect(unix_socket=str(server.socket), user="root", autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION lock_wait_timeout = 1")
            try:
                cur.execute("INSERT INTO shop.orders (item, written) VALUES ('x', NOW(6))")
                return True
            except pymysql.err.OperationalError as exc:
                assert exc.args[0] == 1205, exc  # lock wait timeout
                return False
    finally:
        conn.close()


def test_freeze_blocks_writers_until_thaw(server):
    plugin, ctx, asset = MariaDBPlugin(), _ctx(), _asset(server, 60)
    plugin.freeze(asset, ctx)
    try:
        assert not _try_write(server)
        position = plugin._freezes.position(asset.external_id)
        assert position == {
            "file": server.execute("SHOW MASTER STATUS")[0][0],
            "position": server.execute("SHOW MASTER STATUS")[0][1],
            "gtid": server.execute("SELECT @@gtid_binlog_pos")[0][0],
        }
    finally:
        plugin.thaw(asset, ctx)
    assert _try_write(server)
    plugin.thaw(asset, ctx)  # a second thaw has nothing to release


def test_a_freeze_that_runs_out_is_released_and_thaw_says_so(server):
    plugin, ctx, asset = MariaDBPlugin(), _ctx(), _asset(server, 1)
    plugin.freeze(asset, ctx)
    deadline = time.monotonic() + 60
    while not _try_write(server):  # the watchdog lets writers through again
        assert time.monotonic() < deadline, "the freeze was never released"
    with pytest.raises(PluginError, match="ran out after 1 s"):
        plugin.thaw(asset, ctx)


def test_freeze_with_wrong_credentials_fails_and_holds_nothing(server):
    plugin, ctx = MariaDBPlugin(), _ctx()
    asset = _asset(server, 60)
    bad = dataclasses.replace(
        asset,
        metadata={"connection": {**asset.metadata["connection"], "user": "nobody"}},
    )
    with pytest.raises(PluginError, match="wrong user or password"):
        plugin.freeze(bad, ctx)
    assert _try_write(server)  # nothing was locked
    assert plugin._freezes.position(bad.external_id) is None
