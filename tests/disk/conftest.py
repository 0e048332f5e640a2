"""Fixtures for the disk pool tests: real pool folders, and a real small tmpfs."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tapir.appliance.plugin_api import PluginContext
from tapir.plugins.disk.layout import create_layout
from tapir.plugins.disk.store import DiskStore

from .helpers import pool_info

SMALL_PACK = 64 * 1024


@pytest.fixture
def ctx() -> PluginContext:
    return PluginContext(logger=logging.getLogger("tests.disk"))


@pytest.fixture
def make_pool(tmp_path: Path) -> Iterator[Callable[..., DiskStore]]:
    """Create a pool folder (once per path) and open a store on it; all are closed after."""
    opened: list[DiskStore] = []

    def make(path: Path | None = None, **options: object) -> DiskStore:
        path = path or tmp_path / "pool"
        if not (path / "tapir-disk-pool.json").exists():
            create_layout(path, pool_info(path))
        options.setdefault("pack_size", SMALL_PACK)
        options.setdefault("lock_timeout", 5.0)
        store = DiskStore(path, **options)  # type: ignore[arg-type]
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 8 MiB tmpfs, unmounted afterwards (the tests run as root)."""
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount_point)], check=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)
