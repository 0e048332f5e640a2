"""Copies across encryption, and copies that die: a killed or canceled copy leaves no
point, and the next run completes the job."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from copyhelpers import MiB, assert_ok, copies, make_tree, restored, snapshot

from tapir.appliance.config import load_settings
from tapir.appliance.engine.progress import ProgressSnapshot
from tapir.appliance.engine.service import Appliance

TAPIR = Path(sys.executable).parent / "tapir"


def test_encrypted_source_to_plain_target_and_back(app: Appliance, tmp_path: Path) -> None:
    home = app.settings.home
    app.create_pool("secret", "disk", path=home.parent / "secret", encrypted=True)
    app.create_pool("secret2", "disk", path=home.parent / "secret2", encrypted=True)
    src = tmp_path / "src"
    make_tree(src, seed=11)
    expected = snapshot(src)
    app.create_job("web", "files", "secret", options={"paths": [str(src)]})
    assert_ok(app.run_job("web"))
    app.create_copy_job("out", "secret", "offsite")
    app.create_copy_job("back", "offsite", "secret2")
    assert_ok(app.run_job("out"))
    assert_ok(app.run_job("back"))

    (plain,) = copies(app, "out")
    (again,) = copies(app, "back")
    assert again.meta["copied_from"] == plain.id
    assert not app.pool_medium_status("offsite").encrypted
    assert app.pool_medium_status("secret2").encrypted
    # The plain pool holds the data readable without keys; the encrypted ones do not.
    needle = (src / "data" / "small.txt").read_bytes()[:64]
    assert needle in b"".join(p.read_bytes() for p in (home.parent / "offsite").rglob("*.pack"))
    for pool in ("secret", "secret2"):
        packs = b"".join(p.read_bytes() for p in (home.parent / pool).rglob("*.pack"))
        assert packs and needle not in packs
    for rp in (plain, again):
        root = restored(app, rp.id, tmp_path / f"restore-{rp.pool.name}", src)
        assert snapshot(root) == expected


def test_a_canceled_copy_leaves_no_point_and_the_next_run_completes(
    app: Appliance, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    make_tree(src, seed=12, size=6 * MiB)
    app.create_job("web", "files", "default", options={"paths": [str(src)]})
    assert_ok(app.run_job("web"))
    app.create_copy_job("vault", "default", "offsite")

    canceled: list[int] = []

    def cancel_midway(snap: ProgressSnapshot) -> None:
        # The operator cancels as soon as the copy shows progress.
        if snap.run_id is not None and not canceled:
            canceled.append(snap.run_id)
            app.cancel_run(snap.run_id)

    run = app.run_job("vault", progress=cancel_midway)
    assert run.state == "canceled", run.error
    assert copies(app, "vault") == []
    assert not list((app.settings.home.parent / "offsite" / "manifests").iterdir())
    assert_ok(app.run_job("vault"))
    (copy,) = copies(app, "vault")
    assert snapshot(restored(app, copy.id, tmp_path / "restore", src)) == snapshot(src)


def _manifests(pool: Path) -> set[str]:
    return {p.name for p in (pool / "manifests").iterdir()}


def test_a_killed_copy_leaves_no_point_and_the_next_run_completes_it(
    home: Path, tmp_path: Path
) -> None:
    app = Appliance.open(load_settings(home))
    app.initialize()
    offsite = tmp_path / "offsite"
    app.create_pool("offsite", "disk", path=offsite)
    src = tmp_path / "src"
    rnd = random.Random(13)
    expected = {}
    app.create_job("web", "files", "default", options={"paths": [str(src)]})
    for _ in range(3):
        # Incompressible, distinct data: each copy takes a while to write.
        (src / "big.bin").parent.mkdir(exist_ok=True)
        (src / "big.bin").write_bytes(rnd.randbytes(40 * MiB))
        assert_ok(app.run_job("web"))
        expected[app.recovery_points(job="web")[0].id] = snapshot(src)
    app.create_copy_job("vault", "default", "offsite")
    app.close()

    env = {k: v for k, v in os.environ.items() if not k.startswith("TAPIR_")}
    proc = subprocess.Popen(
        [str(TAPIR), "--home", str(home), "job", "run", "vault"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    start = time.monotonic()
    try:
        # Kill once the first copy's manifest is on the target: the second is being
        # written, and the first may or may not have its catalog row yet.
        while proc.poll() is None and not _manifests(offsite):
            assert time.monotonic() - start < 120, "the copy never stored a manifest"
            time.sleep(0.001)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the copy ended before it could be killed"

    # Opening the appliance recovers the dead run: failed, and a whole copy it stored
    # but did not record is adopted.
    app = Appliance.open(load_settings(home))
    try:
        (run,) = app.runs(job="vault")
        assert run.state == "failed" and "worker died" in (run.error or "")
        made = copies(app, "vault")
        assert len(made) <= 1
        assert {rp.id for rp in made} == _manifests(offsite)
        for rp in made:
            assert rp.run_id == run.id

        again = app.run_job("vault")
        assert_ok(again)
        made = copies(app, "vault")
        assert sorted(rp.meta["copied_from"] for rp in made) == sorted(expected)
        assert [rp.level for rp in made] == ["full", "incremental", "incremental"]
        for rp in made:
            target = tmp_path / f"restore-{rp.id}"
            root = restored(app, rp.id, target, src)
            assert snapshot(root) == expected[rp.meta["copied_from"]]
        assert app.verify("offsite").ok
    finally:
        app.close()
