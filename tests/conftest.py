"""Fixtures shared by every test folder."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Plain helper modules at the top of tests/ (pg_server, vtl) import as top-level names.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pg_server import start_postgres


@pytest.fixture(scope="session")
def pg_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real PostgreSQL server for the whole session (stopped and removed at the end).

    Tests create their own database in it with ``pg_server.create_database``.
    """
    url, stop = start_postgres(tmp_path_factory.mktemp("pg"))
    try:
        yield url
    finally:
        stop()
