"""The plugin as the engine sees it: registration, options, capabilities, discovery."""

from __future__ import annotations

import socket
from pathlib import Path

from tapir.appliance.plugin_api import ApplicationPlugin
from tapir.appliance.plugin_manager import load_plugins
from tapir.plugins.files import plugin as files_module


def test_registered_through_the_entry_point():
    registry = load_plugins()
    assert not [f for f in registry.failures if f.name == "files"]
    plugin = registry.source_plugin("files")
    assert isinstance(plugin, ApplicationPlugin)
    loaded = next(p for p in registry.loaded if p.name == "files")
    assert loaded.version == files_module.__version__
    assert "tapir_application_plugins" in loaded.hooks


def test_options_and_capabilities(plugin):
    specs = {o.name: o for o in plugin.job_options()}
    assert list(specs) == ["paths", "include", "exclude", "one_file_system", "exclude_caches"]
    assert specs["paths"].required
    assert specs["one_file_system"].default is False
    assert specs["exclude_caches"].default is True
    assert {"incremental", "file-restore"} <= plugin.capabilities()


def test_discover_returns_this_host(plugin, ctx):
    assets = plugin.discover(None, ctx)
    assert len(assets) == 1
    host = assets[0]
    assert (host.kind, host.name) == ("host", socket.gethostname())
    machine_id = Path("/etc/machine-id").read_text().strip()
    assert host.external_id == "files:" + machine_id
