"""What rescan and attach do with bad input: damaged or foreign manifests, points gone
from the medium, folders that are not pools, a busy pool. Nothing is lost either way."""

from __future__ import annotations

import os
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tapir.appliance.catalog.models import Run, RunState
from tapir.appliance.datapath.manifest import Manifest
from tapir.appliance.plugin_api import PoolInfo
from tapir.appliance.plugin_api.errors import TapirError
from tapir.plugins.disk.layout import create_layout

from .conftest import MakeAppliance, backup_twice


def _manifest_file(pool_dir: Path, rp_id: str) -> Path:
    path = pool_dir / "manifests" / rp_id
    assert path.is_file()
    return path


def test_unreadable_manifests_are_reported_and_the_rest_taken_in(
    make_appliance: MakeAppliance, source: Path, tmp_path: Path
) -> None:
    a = make_appliance("a")
    vault = tmp_path / "vault"
    a.create_pool("vault", path=vault)
    full_id, inc_id = backup_twice(a, "vault", source)
    # One damaged manifest, one that is not a manifest at all, one without an asset.
    damaged = _manifest_file(vault, full_id)
    data = bytearray(damaged.read_bytes())
    data[-5] ^= 0xFF
    damaged.write_bytes(bytes(data))
    junk_id = uuid.uuid4().hex
    (vault / "manifests" / junk_id).write_bytes(b"not a manifest")
    nameless_id = uuid.uuid4().hex
    repo = a.repository("vault")
    try:
        repo.write_manifest(
            Manifest(
                id=nameless_id,
                asset={"plugin": "files"},
                kind="files",
                level="full",
                created_at=datetime.now(UTC).isoformat(),
            )
        )
    finally:
        repo.store.close()

    b = make_appliance("b")
    b.attach_pool("vault", path=vault)
    report = b.rescan_pool("vault")
    assert report.added == [inc_id]
    problems = {p.recovery_point: p.message for p in report.unreadable}
    assert set(problems) == {full_id, junk_id, nameless_id}
    assert "damaged" in problems[full_id]
    assert "truncated" in problems[junk_id]
    assert "external_id" in problems[nameless_id]
    assert not report.ok
    # The incremental is a complete index: it restores without its (unreadable) parent.
    (point,) = b.recovery_points()
    assert point.id == inc_id and point.parent_id == full_id
    result = b.restore(inc_id, target=tmp_path / "restore")
    assert result.failed == [] and result.items_restored > 0
    # Rescan only reads: the damaged files are still there for an expert to look at.
    assert damaged.read_bytes() == bytes(data)
    assert (vault / "manifests" / junk_id).read_bytes() == b"not a manifest"


def test_points_gone_from_the_medium_are_listed_then_pruned_on_request(
    make_appliance: MakeAppliance, source: Path, tmp_path: Path
) -> None:
    a = make_appliance("a")
    vault = tmp_path / "vault"
    a.create_pool("vault", path=vault)
    full_id, inc_id = backup_twice(a, "vault", source)
    a.create_job("other", "files", "vault", options={"paths": [str(source / "docs")]})
    assert a.run_job("other").state == "succeeded"
    other_id = a.recovery_points(job="other")[0].id
    _manifest_file(vault, full_id).unlink()
    _manifest_file(vault, other_id).unlink()

    report = a.rescan_pool("vault")
    assert report.missing == sorted([full_id, other_id])
    assert report.pruned == [] and not report.ok
    assert report.already == 1 and report.added == []
    assert len(a.recovery_points()) == 3  # listed, never deleted silently

    a.set_legal_hold(full_id, True)
    pruned = a.rescan_pool("vault", prune_missing=True)
    assert pruned.pruned == [other_id] and pruned.held == [full_id]
    assert not pruned.ok  # the held row still lacks its manifest
    assert {rp.id for rp in a.recovery_points()} == {full_id, inc_id}

    a.set_legal_hold(full_id, False)
    final = a.rescan_pool("vault", prune_missing=True)
    assert final.pruned == [full_id] and final.ok
    assert [rp.id for rp in a.recovery_points()] == [inc_id]
    assert a.rescan_pool("vault").ok


def test_a_copy_of_a_pool_is_recognised_and_not_attached_twice(
    make_appliance: MakeAppliance, source: Path, tmp_path: Path
) -> None:
    a = make_appliance("a")
    vault = tmp_path / "vault"
    a.create_pool("vault", path=vault)
    backup_twice(a, "vault", source)
    shutil.copytree(vault, tmp_path / "copy", symlinks=True)
    # The copy carries the original's medium id: the same pool by another path.
    with pytest.raises(ValueError, match="already attached as pool 'vault'"):
        a.attach_pool("copy", path=tmp_path / "copy")
    assert [p.name for p in a.pools()] == ["default", "vault"]
    assert {rp.pool.name for rp in a.recovery_points()} == {"vault"}


def test_attach_refuses_what_is_not_an_initialised_pool(
    make_appliance: MakeAppliance, tmp_path: Path
) -> None:
    app = make_appliance("a")
    before = [p.name for p in app.pools()]

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TapirError, match=r"cannot attach pool 'x': .* is not a Tapir disk pool"):
        app.attach_pool("x", path=empty)
    assert os.listdir(empty) == []  # nothing written to a folder that is not a pool

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "photo.jpg").write_bytes(b"\xff\xd8 not ours")
    with pytest.raises(TapirError, match="is not a Tapir disk pool"):
        app.attach_pool("x", path=foreign)
    assert os.listdir(foreign) == ["photo.jpg"]
    assert (foreign / "photo.jpg").read_bytes() == b"\xff\xd8 not ours"

    with pytest.raises(TapirError, match="does not exist"):
        app.attach_pool("x", path=tmp_path / "nowhere")

    # A disk pool whose creation stopped before the repository was initialised.
    half = tmp_path / "half"
    create_layout(half, PoolInfo(id=1, name="half", media="disk", options={}))
    with pytest.raises(TapirError, match="holds no Tapir repository"):
        app.attach_pool("x", path=half)

    assert [p.name for p in app.pools()] == before  # no row left by any refusal


def test_attach_refuses_a_taken_name_or_a_medium_already_attached(
    make_appliance: MakeAppliance, tmp_path: Path
) -> None:
    app = make_appliance("a")
    app.create_pool("vault", path=tmp_path / "vault")
    with pytest.raises(ValueError, match="already attached as pool 'vault'"):
        app.attach_pool("again", path=tmp_path / "vault")
    with pytest.raises(ValueError, match="already attached as pool 'default'"):
        app.attach_pool("again", path=app.settings.pools_dir / "default")
    with pytest.raises(ValueError, match="a pool named 'vault' already exists"):
        app.attach_pool("vault", path=tmp_path / "vault")
    with pytest.raises(ValueError, match="invalid pool name"):
        app.attach_pool("../up", path=tmp_path / "vault")
    with pytest.raises(KeyError, match="no media plugin named 'nope'"):
        app.attach_pool("x", "nope", path=tmp_path / "vault")
    with pytest.raises(KeyError, match="no pool named 'ghost'"):
        app.rescan_pool("ghost")
    assert sorted(p.name for p in app.pools()) == ["default", "vault"]


def test_rescan_is_refused_while_a_backup_runs_on_the_pool(
    make_appliance: MakeAppliance, source: Path, tmp_path: Path
) -> None:
    app = make_appliance("a")
    app.create_pool("vault", path=tmp_path / "vault")
    app.create_job("home", "files", "vault", options={"paths": [str(source)]})
    now = datetime.now(UTC)
    with app.catalog.session() as s:
        job_id = app.jobs()[0].id
        s.add(Run(job_id=job_id, state=RunState.RUNNING, started_at=now, heartbeat_at=now))
    with pytest.raises(TapirError, match="1 running run"):
        app.rescan_pool("vault")
    assert app.rescan_pool("default").ok  # other pools are not held back
