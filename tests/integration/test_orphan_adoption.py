"""A worker killed between storing a manifest and recording it: the whole backup is
adopted by crash recovery instead of lying on the pool unseen."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tapir.appliance.config import Settings
from tapir.appliance.engine.service import Appliance

# The manifest is durable; the process dies before the catalog row is written.
_KILLED_AFTER_MANIFEST = """
import os, signal, sys
from pathlib import Path
from tapir.appliance.config import Settings
from tapir.appliance.engine.service import Appliance
app = Appliance.open(Settings(home=Path(sys.argv[1]), database_url=sys.argv[2]))
make_writer = app.env.writer_factory
def writer(*args, **kwargs):
    w = make_writer(*args, **kwargs)
    finish = w.finish
    def finish_then_die(*a, **k):
        finish(*a, **k)
        os.kill(os.getpid(), signal.SIGKILL)
    w.finish = finish_then_die
    return w
app.env.writer_factory = writer
app.run_job("docs")
"""


def test_a_point_stored_before_the_worker_died_is_adopted(app: Appliance, tmp_path: Path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_bytes(os.urandom(200_000))
    app.create_job("docs", "files", "default", options={"paths": [str(src)]})
    child = subprocess.run(
        [sys.executable, "-c", _KILLED_AFTER_MANIFEST, str(app.settings.home), app.catalog.url],
        timeout=120,
    )
    assert child.returncode == -9
    (run,) = app.runs()
    assert run.state == "running" and app.recovery_points() == []

    reopened = Appliance.open(Settings(home=app.settings.home, database_url=app.catalog.url))
    try:
        run = reopened.run(run.id)
        assert run.state == "failed" and "worker died" in run.error
        (rp,) = reopened.recovery_points(job="docs")
        assert rp.run_id == run.id and rp.level == "full"
        log = " ".join(message for _, _, message in reopened.run_log(run.id))
        assert f"recovery point {rp.id} was stored whole" in log
        target = tmp_path / "restore"
        reopened.restore(rp.id, target=target)
        assert next(target.rglob("a.txt")).read_bytes() == (src / "a.txt").read_bytes()
        # The chain goes on from the adopted point.
        (src / "b.txt").write_text("later")
        assert reopened.run_job("docs").level == "incremental"
    finally:
        reopened.close()
