"""Fixtures of the scheduler tests: a real appliance with the bundled plugins (files,
disk) on SQLite and on PostgreSQL, a files job, and the notification peers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pg_server import create_database

from tapir.appliance.config import load_settings
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_api import hookimpl
from tapir.appliance.plugin_manager import load_plugins

from .servers import Hook, Mailbox, smtp_server, webhook_server


class NotifyRecorder:
    """A plugin implementing ``tapir_notify``, as a third party delivering elsewhere would."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    @hookimpl
    def tapir_notify(self, event: str, subject: str, body: str, details: dict[str, Any]) -> None:
        self.calls.append({"event": event, "subject": subject, "body": body, "details": details})


@pytest.fixture
def recorder() -> NotifyRecorder:
    return NotifyRecorder()


def _open(home: Path, url: str | None, recorder: NotifyRecorder) -> Appliance:
    registry = load_plugins(extra=[recorder])
    app = Appliance.open(load_settings(home, url), registry=registry)
    app.initialize()
    return app


@pytest.fixture(params=["sqlite", "postgresql"])
def app(
    request: pytest.FixtureRequest, tmp_path: Path, recorder: NotifyRecorder
) -> Iterator[Appliance]:
    """An initialised appliance (the 'default' disk pool) on each catalog backend."""
    url = None
    if request.param == "postgresql":
        url = create_database(request.getfixturevalue("pg_url"), f"s_{uuid.uuid4().hex[:16]}")
    appliance = _open(tmp_path / "home", url, recorder)
    yield appliance
    appliance.close()


@pytest.fixture
def lite(tmp_path: Path, recorder: NotifyRecorder) -> Iterator[Appliance]:
    """The same appliance on SQLite only (tests about logic, not the database)."""
    appliance = _open(tmp_path / "home", None, recorder)
    yield appliance
    appliance.close()


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A small folder to back up."""
    folder = tmp_path / "src"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("alpha\n" * 100)
    (folder / "sub" / "b.bin").write_bytes(bytes(range(256)) * 64)
    return folder


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[tuple[int, Mailbox, Path]]:
    cert_dir = tmp_path / "tls"
    cert_dir.mkdir()
    with smtp_server(cert_dir) as server:
        yield server


@pytest.fixture
def webhook() -> Iterator[tuple[str, Hook]]:
    with webhook_server() as server:
        yield server
