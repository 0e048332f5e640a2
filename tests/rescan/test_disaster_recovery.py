"""An encrypted pool written by appliance A, read by a new appliance B after the loss
of A: attach, import the exported key, rescan, then list, browse and restore."""

from __future__ import annotations

from pathlib import Path

import pytest

from tapir.appliance.plugin_api.errors import TapirError

from .conftest import MakeAppliance, backup_twice, restored_root, tree

PASSPHRASE = "correct horse battery staple"


def test_rebuild_catalog_of_encrypted_pool_on_new_appliance(
    make_appliance: MakeAppliance, catalog_kind: str, source: Path, tmp_path: Path
) -> None:
    a = make_appliance("a", catalog_kind)
    vault = tmp_path / "vault"
    a.create_pool("vault", path=vault, encrypted=True)
    full_id, inc_id = backup_twice(a, "vault", source)
    exported = a.export_pool_key("vault", PASSPHRASE)
    originals = {rp.id: rp for rp in a.recovery_points()}
    a.close()  # appliance A is lost: only the pool folder and the exported key remain

    b = make_appliance("b", catalog_kind)
    assert b.settings.home != a.settings.home
    pool = b.attach_pool("vault", path=vault)
    assert pool.encrypted and pool.media == "disk"
    assert pool.options["path"] == str(vault.resolve())
    status = b.pool_medium_status("vault")
    assert status.encrypted and not status.keys_usable and status.manifests == 2
    assert status.message and "tapir pool key import vault" in status.message

    # Before the key is imported nothing can be read, and the error says what to do.
    with pytest.raises(TapirError, match="tapir pool key import vault FILE"):
        b.rescan_pool("vault")
    with pytest.raises(TapirError, match="wrong passphrase"):
        b.import_pool_key("vault", exported, "not the passphrase")
    b.create_pool("other", path=tmp_path / "other", encrypted=True)
    with pytest.raises(TapirError, match="belongs to another pool"):
        b.import_pool_key("vault", b.export_pool_key("other", PASSPHRASE), PASSPHRASE)
    assert b.recovery_points() == []
    b.import_pool_key("vault", exported, PASSPHRASE)
    assert b.pool_medium_status("vault").keys_usable

    b.create_job("home", "files", "vault", options={"paths": [str(source)]})
    report = b.rescan_pool("vault")
    assert report.ok, report
    assert sorted(report.added) == sorted([full_id, inc_id])
    assert report.already == 0 and report.unreadable == [] and report.missing == []
    assert len(report.assets_created) == 1 and report.unlinked_jobs == {}

    points = {rp.id: rp for rp in b.recovery_points()}
    assert set(points) == {full_id, inc_id}
    for rp_id, rp in points.items():
        old = originals[rp_id]
        assert rp.job is not None and rp.job.name == "home"
        assert rp.pool.name == "vault"
        assert (rp.asset.plugin, rp.asset.external_id, rp.asset.name) == (
            old.asset.plugin,
            old.asset.external_id,
            old.asset.name,
        )
        assert (rp.level, rp.kind, rp.parent_id, rp.plugin) == (
            old.level,
            old.kind,
            old.parent_id,
            old.plugin,
        )
        assert rp.created_at == old.created_at
        assert (rp.items, rp.bytes_logical, rp.bytes_new) == (
            old.items,
            old.bytes_logical,
            old.bytes_new,
        )
        assert rp.run_id is None
    assert points[inc_id].level == "incremental" and points[inc_id].parent_id == full_id
    assert points[full_id].level == "full" and points[full_id].parent_id is None

    # Browse and restore byte for byte, from the rebuilt catalog alone.
    names = {i.path.rsplit(b"/", 1)[-1] for i in b.list_items("home:latest", recursive=True)}
    assert {b"report.txt", b"new.txt", b"data.bin", b"link"} <= names
    target = tmp_path / "restore"
    result = b.restore("home:latest", target=target)
    assert result.failed == [] and result.items_restored >= 6
    assert tree(restored_root(target, source)) == tree(source)
    assert b.verify("vault").ok

    # A second rescan adds nothing.
    again = b.rescan_pool("vault")
    assert again.ok and again.added == [] and again.already == 2
    assert len(b.recovery_points()) == 2

    # The job carries on from the rebuilt chain: the next backup is an incremental.
    (source / "docs/third.txt").write_bytes(b"third run\n")
    run = b.run_job("home")
    assert run.state == "succeeded", run.error
    latest = b.recovery_points(job="home")[0]
    assert latest.level == "incremental" and latest.parent_id == inc_id


def test_points_without_a_job_are_linked_once_the_job_exists(
    make_appliance: MakeAppliance, source: Path, tmp_path: Path
) -> None:
    a = make_appliance("a")
    vault = tmp_path / "vault"
    a.create_pool("vault", path=vault)  # not encrypted: no key to import
    full_id, inc_id = backup_twice(a, "vault", source)

    b = make_appliance("b")
    assert b.attach_pool("vault", path=vault).encrypted is False
    assert b.pool_medium_status("vault").message is None
    first = b.rescan_pool("vault")
    assert sorted(first.added) == sorted([full_id, inc_id])
    assert first.unlinked_jobs == {"home": "no job of that name in the catalog"}
    assert all(rp.job is None for rp in b.recovery_points())
    assert first.ok  # unlinked points are complete; only the link is missing

    b.create_job("home", "files", "vault", options={"paths": [str(source)]})
    second = b.rescan_pool("vault")
    assert second.added == [] and sorted(second.relinked) == sorted([full_id, inc_id])
    assert [rp.id for rp in b.recovery_points(job="home")] == [inc_id, full_id]
    assert b.rescan_pool("vault").relinked == []


def test_a_job_of_the_same_name_for_another_plugin_is_not_linked(
    make_appliance: MakeAppliance, source: Path, tmp_path: Path
) -> None:
    a = make_appliance("a")
    a.create_pool("vault", path=tmp_path / "vault")
    backup_twice(a, "vault", source)

    b = make_appliance("b")
    b.attach_pool("vault", path=tmp_path / "vault")
    b.create_job("home", "imagefile", "vault", options={"images": [str(tmp_path / "x.img")]})
    report = b.rescan_pool("vault")
    assert len(report.added) == 2
    assert "uses plugin 'imagefile'" in report.unlinked_jobs["home"]
    assert b.recovery_points(job="home") == []
