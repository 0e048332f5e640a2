"""Plugin loading: entry points, role registration, and broken plugins contained."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from tapir.appliance.plugin_api import (
    ApplicationPlugin,
    BackupResult,
    MediaPlugin,
    RestoreResult,
    hookimpl,
)
from tapir.appliance.plugin_manager import load_plugins


class _Source(ApplicationPlugin):
    name = "demo-source"

    def discover(self, endpoint, ctx):
        return []

    def backup(self, request, sink, ctx):
        return BackupResult()

    def restore(self, request, source, ctx):
        return RestoreResult()


class GoodPlugin:
    __name__ = "good"
    __version__ = "1.2.3"

    @hookimpl
    def tapir_application_plugins(self):
        return [_Source()]

    @hookimpl
    def tapir_run_started(self, run):
        self.started = run


class RaisingRegistration:
    __name__ = "raising"

    @hookimpl
    def tapir_media_plugins(self):
        raise RuntimeError("boom in registration")


class WrongType:
    __name__ = "wrongtype"

    @hookimpl
    def tapir_media_plugins(self):
        return [object()]


class RaisingEvent:
    __name__ = "raising-event"

    @hookimpl
    def tapir_run_started(self, run):
        raise ValueError("event hook bug")


def test_good_plugin_roles_and_hooks_are_listed():
    reg = load_plugins(extra=[GoodPlugin()], entry_points=False)
    assert "demo-source" in reg.sources
    loaded = {p.name: p for p in reg.loaded}
    assert loaded["good"].version == "1.2.3"
    assert loaded["good"].hooks == ["tapir_application_plugins", "tapir_run_started"]
    assert reg.failures == []


def test_broken_plugins_are_reported_and_others_still_load():
    good = GoodPlugin()
    reg = load_plugins(
        extra=[RaisingRegistration(), WrongType(), good, RaisingEvent()], entry_points=False
    )
    assert "demo-source" in reg.sources
    stages = {(f.name, f.stage) for f in reg.failures}
    assert ("raising", "register") in stages
    assert ("wrongtype", "register") in stages
    assert not reg.media
    # An event hook that raises is logged, and the other implementations still run.
    reg.call_event("tapir_run_started", run={"id": 7})
    assert good.started == {"id": 7}
    assert any(f.name == "raising-event" and "event hook bug" in f.error for f in reg.failures)


def test_duplicate_role_names_are_refused():
    reg = load_plugins(
        extra=[GoodPlugin(), type("Dup", (GoodPlugin,), {"__name__": "dup"})()], entry_points=False
    )
    assert any("already registered" in f.error for f in reg.failures)


def test_unknown_role_lookup_names_what_is_loaded():
    reg = load_plugins(extra=[GoodPlugin()], entry_points=False)
    with pytest.raises(KeyError, match="demo-source"):
        reg.source_plugin("nope")


@pytest.fixture
def fake_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A third-party distribution on sys.path whose plugin module fails to import."""
    (tmp_path / "tapir_broken_plugin.py").write_text("raise ImportError('missing vendor SDK')\n")
    dist = tmp_path / "tapir_broken_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: tapir-broken-plugin\nVersion: 0.1\n"
    )
    (dist / "entry_points.txt").write_text(
        textwrap.dedent(
            """
            [tapir]
            broken = tapir_broken_plugin
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("tapir_broken_plugin", None)


def test_entry_point_import_error_is_contained(fake_distribution: Path):
    reg = load_plugins()
    failure = next(f for f in reg.failures if f.name == "broken")
    assert failure.stage == "import"
    assert "missing vendor SDK" in failure.error
    # The bundled plugins are loaded through the same entry points.
    names = {p.name for p in reg.loaded}
    assert {"disk", "files"} <= names


def test_media_plugin_must_be_named():
    class Nameless(MediaPlugin):
        def create(self, pool, ctx):
            raise NotImplementedError

        def open(self, pool, ctx):
            raise NotImplementedError

    class P:
        __name__ = "nameless"

        @hookimpl
        def tapir_media_plugins(self):
            return [Nameless()]

    reg = load_plugins(extra=[P()], entry_points=False)
    assert any("has no name" in f.error for f in reg.failures)
