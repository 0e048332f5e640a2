"""The tape plugin asks for an operator when a cartridge it needs is not in the library
(a real tgt library, a real webhook receiver)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from vtl import Cartridge, VirtualLibrary, start_library

from tapir.appliance.config import load_settings
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_api import VolumeInfo
from tapir.plugins.tape.library import Library, VolumeUnavailable

from .servers import Hook


@pytest.fixture
def vtl(tmp_path: Path) -> Iterator[VirtualLibrary]:
    lib, stop = start_library(tmp_path / "vtl", cartridges=[Cartridge("TAP001L8", slot=1)])
    try:
        yield lib
    finally:
        stop()


@pytest.fixture
def tape_app(tmp_path: Path, vtl: VirtualLibrary) -> Iterator[Appliance]:
    app = Appliance.open(load_settings(tmp_path / "home"))
    app.initialize()
    app.register_device("lib1", "changer", vtl.changer_url)
    for number, url in enumerate(vtl.drive_urls):
        app.register_device(f"lib1-d{number}", "drive", url, changer="lib1", drive_number=number)
    yield app
    app.close()


def test_a_cartridge_in_the_vault_is_asked_for(
    tape_app: Appliance, source: Path, webhook: tuple[str, Hook]
) -> None:
    url, hook = webhook
    tape_app.add_notification_target("desk", "webhook", {"url": url}, events=["operator-request"])
    tape_app.create_job("j", "files", "default", options={"paths": [str(source)]})
    run_id = tape_app.queue_run("j")
    ctx = tape_app.env.plugin_context("tape", run_id=run_id)
    assert ctx.volumes is not None and ctx.devices is not None
    ctx.volumes.save(VolumeInfo(label="VLT001L8", pool=None, state="full", location="vault: A3"))
    library = Library(ctx, "lib1")
    try:
        with pytest.raises(VolumeUnavailable, match="cartridge VLT001L8 is needed"):
            library.mount("VLT001L8", ctx.devices.get("lib1-d0"))
    finally:
        library.close()
    payload = hook.json()
    assert payload["event"] == "operator-request"
    assert payload["subject"] == "[tapir] operator needed: insert cartridge VLT001L8"
    assert "catalog: vault: A3" in payload["body"]
    assert payload["details"] == {"plugin": "tape", "run": run_id}
    assert any(
        m == "operator needed: insert cartridge VLT001L8" for _, _, m in tape_app.run_log(run_id)
    )
