"""The engine with the bundled plugins: a disk pool, a files job, real folders."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tapir.appliance.config import Settings
from tapir.appliance.engine.service import Appliance


@pytest.fixture
def real_app(tmp_path: Path, catalog_url: str) -> Appliance:
    settings = Settings(home=tmp_path / "home", database_url=catalog_url)
    app = Appliance.open(settings)
    yield app
    app.close()


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_init_backup_incremental_restore_prune(real_app: Appliance, tmp_path: Path) -> None:
    app = real_app
    password = app.initialize()
    assert password and len(password) == 20
    assert app.initialize() is None  # idempotent, and the password is shown once only
    assert app.authenticate("admin", password).role == "admin"
    assert [p.name for p in app.pools()] == ["default"]
    assert app.pools()[0].options["path"] == str(app.settings.pools_dir / "default")

    src = tmp_path / "src"
    (src / "docs").mkdir(parents=True)
    (src / "docs/report.txt").write_bytes(b"quarterly numbers\n" * 5000)
    (src / "big.bin").write_bytes(os.urandom(3 << 20))
    app.create_retention_policy("keep2", keep_last=2)
    app.create_job("home", "files", "default", options={"paths": [str(src)]}, retention="keep2")

    full = app.run_job("home")
    assert full.state == "succeeded", full.error
    (src / "docs/new.txt").write_bytes(b"added later")
    (src / "docs/report.txt").write_bytes(b"revised numbers\n" * 5000)
    inc = app.run_job("home")
    assert inc.state == "succeeded", inc.error
    points = app.recovery_points(job="home")
    assert [p.level for p in points] == ["incremental", "full"]
    assert points[0].kind == "files" and points[0].parent_id == points[1].id
    assert inc.bytes_written < full.bytes_written  # big.bin was not stored again

    target = tmp_path / "restore"
    app.restore("home:latest", target=target)
    restored_root = next(p for p in target.rglob("big.bin")).parent
    assert _tree(restored_root) == _tree(src)
    assert app.verify("home:latest").ok

    assert app.run_job("home").state == "succeeded"
    plan = app.prune(dry_run=True)
    assert [d.keep for d in sorted(plan.decisions, key=lambda d: d.created_at)] == [
        False,
        True,
        True,
    ]
    assert len(app.recovery_points()) == 3
    assert app.prune(dry_run=False).deleted == 1
    assert len(app.recovery_points()) == 2
    assert app.gc("default").bytes_reclaimed > 0
    assert app.verify("default").ok
    usage = app.pool_usage("default")
    assert usage["recovery_points"] == 2 and usage["used"] > 0


# Killed at the worst moment: every chunk written, nothing committed yet.
_KILLED_MID_BACKUP = """
import sys, time
from pathlib import Path
from tapir.appliance.config import Settings
from tapir.appliance.engine.service import Appliance
app = Appliance.open(Settings(home=Path(sys.argv[1]), database_url=sys.argv[2]))
make_writer = app.env.writer_factory
def writer(*args, **kwargs):
    w = make_writer(*args, **kwargs)
    def finish(*a, **k):
        print("writing", flush=True)
        time.sleep(600)
    w.finish = finish
    return w
app.env.writer_factory = writer
app.run_job("big")
"""


def test_a_backup_killed_mid_write_leaves_no_point(real_app: Appliance, tmp_path: Path) -> None:
    app = real_app
    app.initialize()
    src = tmp_path / "src"
    src.mkdir()
    for n in range(4):
        (src / f"f{n}.bin").write_bytes(os.urandom(1 << 20))
    app.create_job("big", "files", "default", options={"paths": [str(src)]})
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_MID_BACKUP, str(app.settings.home), app.catalog.url],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "writing"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    (run_id,) = [r.id for r in app.runs()]
    assert app.run(run_id).state == "running"  # until someone notices
    reopened = Appliance.open(app.settings)
    try:
        run = reopened.run(run_id)
        assert run.state == "failed" and run.error.startswith("worker died (process")
        assert reopened.recovery_points() == []
        repo = reopened.repository("default")
        try:
            assert repo.manifest_ids() == []
        finally:
            repo.store.close()
        reopened.gc("default")
        assert reopened.verify("default").ok
        # The job works again afterwards, from a full.
        assert reopened.run_job("big").state == "succeeded"
    finally:
        reopened.close()
