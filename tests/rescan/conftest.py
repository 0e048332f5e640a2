"""Fixtures of the rescan tests: whole appliances (real plugins, real disk pools) on
SQLite or a real PostgreSQL server, and a small source tree for the files plugin."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# tests/ is on sys.path: this folder is a package and tests/ is not (pytest's rootdir rule).
from pg_server import create_database
from trees import tree as tree  # re-exported for the tests here

from tapir.appliance.config import Settings
from tapir.appliance.engine.service import Appliance

MakeAppliance = Callable[..., Appliance]


@pytest.fixture
def pg_server(pg_url: str) -> str:
    """The session's PostgreSQL server (tests/conftest.py)."""
    return pg_url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def catalog_kind(request: pytest.FixtureRequest) -> str:
    """Each catalog backend in turn."""
    return str(request.param)


@pytest.fixture
def make_appliance(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[MakeAppliance]:
    """``make_appliance(name, kind="sqlite")``: a new, initialised appliance with its own
    home (so its own master key) and its own empty catalog."""
    opened: list[Appliance] = []

    def make(name: str, kind: str = "sqlite") -> Appliance:
        home = tmp_path / name
        if kind == "sqlite":
            url = f"sqlite:///{tmp_path / f'{name}-catalog.db'}"
        else:
            server = request.getfixturevalue("pg_server")
            url = create_database(server, f"rescan_{uuid.uuid4().hex[:16]}")
        app = Appliance.open(Settings(home=home, database_url=url))
        opened.append(app)
        app.initialize()
        return app

    yield make
    for app in opened:
        app.close()


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A small tree: text, random data (several chunks), a sub-folder and a symlink."""
    root = tmp_path / "src"
    (root / "docs").mkdir(parents=True)
    (root / "docs/report.txt").write_bytes(b"quarterly numbers\n" * 4000)
    (root / "data.bin").write_bytes(os.urandom(3 << 20))
    (root / "empty").write_bytes(b"")
    os.symlink("docs/report.txt", root / "link")
    return root


def restored_root(target: Path, source: Path) -> Path:
    """Where the files plugin put ``source`` below a restore target."""
    found = [p.parent for p in target.rglob("data.bin")]
    assert len(found) == 1, found
    assert found[0].name == source.name
    return found[0]


def backup_twice(app: Appliance, pool: str, source: Path) -> tuple[str, str]:
    """Job 'home' on ``pool``: a full, a change, an incremental; returns (full, inc) ids."""
    app.create_job("home", "files", pool, options={"paths": [str(source)]})
    full = app.run_job("home")
    assert full.state == "succeeded", full.error
    (source / "docs/new.txt").write_bytes(b"added later\n")
    (source / "docs/report.txt").write_bytes(b"revised numbers\n" * 4000)
    inc = app.run_job("home")
    assert inc.state == "succeeded", inc.error
    points = app.recovery_points(job="home")
    assert [p.level for p in points] == ["incremental", "full"]
    return points[1].id, points[0].id
