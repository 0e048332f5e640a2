"""A pool's medium is recognised by its own id: another pool at its path is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from tapir.appliance.catalog.models import Pool
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_api import TapirError


def test_a_different_pool_at_the_registered_path_is_refused(app: Appliance, tmp_path: Path):
    app.create_pool("a", path=tmp_path / "a")
    app.create_pool("b", path=tmp_path / "b")
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("data")
    app.create_job("j", "files", "a", options={"paths": [str(src)]})
    assert app.run_job("j").state == "succeeded"

    # Someone mounts pool b's disk where pool a is expected.
    with app.catalog.session() as s:
        pool = s.scalar(select(Pool).where(Pool.name == "a"))
        assert pool.options["medium_id"]
        pool.options = {**pool.options, "path": str(tmp_path / "b")}
    with pytest.raises(TapirError, match="holds another pool"):
        app.verify("a")
    run = app.run_job("j")
    assert run.state == "failed"
    assert "holds another pool" in (run.error or "")
