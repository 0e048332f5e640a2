"""The endpoint and its discovery: the server as one asset listing its databases."""

from __future__ import annotations

import pytest

from tapir.appliance.plugin_api import PluginError
from tapir.plugins.mariadb.options import parse_address

from .conftest import PASSWORD


def test_discovery_lists_the_server_and_its_databases(app, server):
    server.execute("CREATE DATABASE crm")
    report = app.discover_endpoint("db1")
    assert report.added == ["db1"]
    (asset,) = app.endpoint_assets("db1")
    assert asset.kind == "mariadb-server"
    assert asset.meta["databases"] == ["crm", "shop"]  # without the server's own
    assert asset.meta["log_bin"] is True
    assert asset.meta["datadir"].rstrip("/") == str(server.datadir)
    assert "MariaDB" in asset.meta["version"]
    # The asset keeps the secret's name so freeze/thaw can log in, never the password.
    assert asset.meta["connection"]["password_secret"]
    assert PASSWORD not in repr(asset.meta)


def test_a_unix_socket_endpoint_works(app, server):
    app.register_endpoint(
        "local", "mariadb", str(server.socket), options={"user": "tapir"}, password=PASSWORD
    )
    app.test_endpoint("local")
    assert app.discover_endpoint("local").added == ["local"]


@pytest.mark.parametrize(
    ("address", "parsed"),
    [
        ("db.example:3307", ("db.example", 3307, None)),
        ("db.example", ("db.example", 3306, None)),
        ("[::1]:3310", ("::1", 3310, None)),
        ("/run/mysqld/mysqld.sock", (None, 3306, "/run/mysqld/mysqld.sock")),
    ],
)
def test_addresses(address, parsed):
    assert parse_address(address) == parsed


@pytest.mark.parametrize("address", ["", "db:0", "db:port", ":3306"])
def test_bad_addresses_are_refused(address):
    with pytest.raises(ValueError):
        parse_address(address)


def test_an_endpoint_without_user_is_refused_with_its_name(app, server):
    import logging

    from tapir.appliance.plugin_api import EndpointInfo, PluginContext
    from tapir.plugins.mariadb.options import endpoint_settings

    endpoint = EndpointInfo("x", "mariadb", f"127.0.0.1:{server.port}", {})
    with pytest.raises(PluginError, match="endpoint x has no user"):
        endpoint_settings(endpoint, PluginContext(logger=logging.getLogger("t")))
