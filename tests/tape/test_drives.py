"""Two backups on two drives at once; a third waits, visibly, for a drive to be free."""

from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path

import pytest

from tapir.appliance.engine.service import Appliance
from tapir.hardware.drive import TapeDrive
from tapir.plugins.tape.reservation import DriveBusy, reserve_drive

from .conftest import MakePool, add_volumes, make_tree

USES = re.compile(r"backup session \w+ uses drive (lib1-d\d)")


def slow_writes(monkeypatch: pytest.MonkeyPatch, delay: float) -> None:
    write = TapeDrive.write

    def slow(drive: TapeDrive, data: bytes) -> None:
        time.sleep(delay)
        write(drive, data)

    monkeypatch.setattr(TapeDrive, "write", slow)


def drives_used(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [m.group(1) for r in caplog.records if (m := USES.search(r.getMessage()))]


def test_two_jobs_use_two_drives_and_a_third_waits(
    app: Appliance,
    make_pool: MakePool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="tapir.plugin.tape")
    add_volumes(app, ["TAP001L8", "TAP002L8", "TAP003L8"])
    for name in ("p1", "p2", "p3"):
        make_pool(name)
        source = make_tree(tmp_path / name, 1 << 20)
        app.create_job(name, "files", name, options={"paths": [str(source)]})
    slow_writes(monkeypatch, 0.03)  # each backup then takes about a second

    runs: dict[str, object] = {}

    def run(name: str) -> None:
        runs[name] = app.run_job(name)

    threads = [threading.Thread(target=run, args=(n,)) for n in ("p1", "p2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(runs[n].state == "succeeded" for n in ("p1", "p2")), [  # type: ignore[attr-defined]
        runs[n].error
        for n in ("p1", "p2")  # type: ignore[attr-defined]
    ]
    assert sorted(drives_used(caplog)) == ["lib1-d0", "lib1-d1"]

    # Both drives busy (leased as another job would): the third job waits and says so.
    ctx = app.plugin_context("tape")
    assert ctx.devices is not None
    drives = ctx.devices.drives_of("lib1")
    first = reserve_drive(ctx, drives, purpose="test holds drive 0")
    second = reserve_drive(ctx, drives, purpose="test holds drive 1")
    with pytest.raises(DriveBusy, match="in use"):
        reserve_drive(ctx, drives, purpose="nobody waits", wait=False)
    caplog.clear()
    third = threading.Thread(target=run, args=("p3",))
    third.start()
    deadline = time.monotonic() + 20
    while not any("waiting for a free drive" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, "the third job never said it was waiting"
        time.sleep(0.1)
    time.sleep(0.5)
    assert third.is_alive() and "p3" not in runs
    second.release()
    third.join(60)
    first.release()
    assert runs["p3"].state == "succeeded", runs["p3"].error  # type: ignore[attr-defined]
    # The wait shows in the run's own log (and so in the CLI and the web panel).
    log = [m for _, _, m in app.run_log(runs["p3"].id)]  # type: ignore[attr-defined]
    assert any("waiting for a free drive" in m for m in log)
    assert drives_used(caplog) == [second.drive.name]
