"""The disk media plugin: registration, pool creation and opening, bad input."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tapir.appliance.plugin_api import PluginContext, PluginError, TapirError
from tapir.appliance.plugin_manager import load_plugins
from tapir.plugins.disk.plugin import DiskMediaPlugin
from tapir.plugins.disk.store import DiskStore

from .helpers import pool_info


def test_entry_point_registers_the_disk_medium() -> None:
    registry = load_plugins()
    plugin = registry.media_plugin("disk")
    assert isinstance(plugin, DiskMediaPlugin)
    assert not [f for f in registry.failures if f.name == "disk"]
    loaded = {p.name: p for p in registry.loaded}
    assert loaded["disk"].version == "0.1.0"
    assert "tapir_media_plugins" in loaded["disk"].hooks


def test_pool_options_require_a_path() -> None:
    (option,) = DiskMediaPlugin().pool_options()
    assert option.name == "path" and option.required and option.type == "path"


def test_create_then_open(tmp_path: Path, ctx: PluginContext) -> None:
    path = tmp_path / "pool"
    plugin = DiskMediaPlugin()
    store = plugin.create(pool_info(path), ctx)
    assert sorted(p.name for p in path.iterdir()) == [
        "config",
        "index",
        "lock",
        "manifests",
        "packs",
        "tapir-disk-pool.json",
        "tmp",
    ]
    marker = json.loads((path / "tapir-disk-pool.json").read_text())
    assert marker["format"] == "tapir-disk-pool" and marker["version"] == 1
    store.put_config("repository", b"cfg")
    store.close()
    again = plugin.open(pool_info(path), ctx)
    assert again.get_config("repository") == b"cfg"


def test_create_refuses_an_existing_pool(tmp_path: Path, ctx: PluginContext) -> None:
    path = tmp_path / "pool"
    DiskMediaPlugin().create(pool_info(path), ctx).close()
    with pytest.raises(PluginError, match="already holds a Tapir disk pool"):
        DiskMediaPlugin().create(pool_info(path), ctx)


def test_create_refuses_a_folder_with_other_files(tmp_path: Path, ctx: PluginContext) -> None:
    path = tmp_path / "data"
    path.mkdir()
    (path / "precious.doc").write_bytes(b"the only copy")
    with pytest.raises(PluginError, match=r"not empty \(precious.doc\)"):
        DiskMediaPlugin().create(pool_info(path), ctx)
    assert sorted(p.name for p in path.iterdir()) == ["precious.doc"]
    assert (path / "precious.doc").read_bytes() == b"the only copy"


def test_create_accepts_a_mount_point_and_an_interrupted_create(
    tmp_path: Path, ctx: PluginContext
) -> None:
    path = tmp_path / "disk"
    path.mkdir()
    (path / "lost+found").mkdir()
    (path / "packs").mkdir()  # left by a create that crashed before writing the marker
    store = DiskMediaPlugin().create(pool_info(path), ctx)
    assert store.manifests() == []


def test_create_refuses_a_missing_parent(tmp_path: Path, ctx: PluginContext) -> None:
    path = tmp_path / "not-mounted" / "pool"
    with pytest.raises(PluginError, match=r"parent folder .* does not exist"):
        DiskMediaPlugin().create(pool_info(path), ctx)
    assert not (tmp_path / "not-mounted").exists()


@pytest.mark.parametrize("options", [{}, {"path": ""}, {"path": "relative/pool"}])
def test_bad_path_option(options: dict[str, object], ctx: PluginContext) -> None:
    pool = pool_info(Path("/x"))
    pool = type(pool)(id=1, name="p", media="disk", options=options)
    with pytest.raises(PluginError, match="'path'"):
        DiskMediaPlugin().create(pool, ctx)
    with pytest.raises(PluginError, match="'path'"):
        DiskMediaPlugin().open(pool, ctx)


def test_open_refuses_what_is_not_a_pool(tmp_path: Path, ctx: PluginContext) -> None:
    with pytest.raises(PluginError, match="does not exist"):
        DiskMediaPlugin().open(pool_info(tmp_path / "absent"), ctx)
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "file").write_bytes(b"x")
    with pytest.raises(PluginError, match="is not a Tapir disk pool"):
        DiskMediaPlugin().open(pool_info(tmp_path / "plain"), ctx)
    assert (tmp_path / "plain" / "file").read_bytes() == b"x"


def test_open_refuses_other_formats_and_damaged_layouts(tmp_path: Path, ctx: PluginContext) -> None:
    path = tmp_path / "pool"
    DiskMediaPlugin().create(pool_info(path), ctx).close()
    marker = path / "tapir-disk-pool.json"
    original = marker.read_bytes()
    marker.write_text(json.dumps({"format": "tapir-disk-pool", "version": 99}))
    with pytest.raises(PluginError, match="format version 99"):
        DiskMediaPlugin().open(pool_info(path), ctx)
    marker.write_text("{not json")
    with pytest.raises(PluginError, match="unreadable"):
        DiskMediaPlugin().open(pool_info(path), ctx)
    marker.write_bytes(original)
    (path / "packs").rmdir()
    with pytest.raises(PluginError, match=r"damaged: the folder.* packs"):
        DiskMediaPlugin().open(pool_info(path), ctx)


@pytest.mark.parametrize("name", ["", "../escape", "a/b", ".hidden", "x" * 201, "sp ace"])
def test_bad_names_are_refused(make_pool: Callable[..., DiskStore], name: str) -> None:
    store = make_pool()
    with pytest.raises(ValueError, match="invalid manifest name"):
        store.put_manifest(name, b"m")
    with pytest.raises(ValueError, match="invalid config name"):
        store.put_config(name, b"c")
    assert store.manifests() == []
    assert not list((store.path / "config").iterdir())


def test_bad_chunk_ids_are_refused(make_pool: Callable[..., DiskStore]) -> None:
    store = make_pool()
    session = store.begin()
    for bad in (b"short", b"x" * 33, "a" * 32):
        with pytest.raises(ValueError, match="32 bytes"):
            session.put_chunk(bad, b"blob")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="32 bytes"):
            store.has_chunk(bad)  # type: ignore[arg-type]
    session.put_chunk(b"k" * 32, b"blob")
    session.commit()
    assert store.get_chunk(b"k" * 32) == b"blob"


def test_delete_missing_manifest(make_pool: Callable[..., DiskStore]) -> None:
    store = make_pool()
    with pytest.raises(FileNotFoundError, match="no manifest"):
        store.delete_manifest("absent")


def test_commit_twice_and_gc_with_own_open_session(make_pool: Callable[..., DiskStore]) -> None:
    store = make_pool()
    session = store.begin()
    session.put_chunk(b"a" * 32, b"1")
    with pytest.raises(TapirError, match="write session"):
        store.delete_chunks([b"a" * 32])
    session.commit()
    with pytest.raises(TapirError, match="already committed"):
        session.commit()
    assert store.delete_chunks([b"a" * 32]) > 0
