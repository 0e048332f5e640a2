"""Fixtures of the appliance-level fault tests: an initialised home driven through the
real ``tapir`` command, and a real small tmpfs."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .helpers import Tapir


@pytest.fixture
def tapir(tmp_path: Path) -> Tapir:
    """``tapir --home TMP/home``, initialised (catalog, master key, default pool)."""
    cli = Tapir(tmp_path / "home")
    cli("init")
    return cli


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """``mount(size)`` mounts a fresh tmpfs of ``size`` (e.g. "32m"); all are unmounted
    afterwards, also when the test failed."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        point = tmp_path / f"tmpfs{len(mounted)}"
        point.mkdir()
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(point)],
            check=True,
        )
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], check=True)
