"""The pool key fingerprint: printed by 'tapir pool key export', written into every
media-set label of an encrypted tape pool, shown by the vault report and a rebuild."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import msgpack
import pytest
from click.testing import CliRunner, Result
from vtl import VirtualLibrary

from tapir.appliance.cli.main import build_cli
from tapir.appliance.config import load_settings
from tapir.appliance.datapath.keys import PoolKeys
from tapir.appliance.datapath.repository import config_key_fingerprint
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_api import TapirError
from tapir.appliance.plugin_manager import load_plugins
from tapir.hardware.changer import MediaChanger
from tapir.hardware.drive import TapeDrive
from tapir.plugins.tape.keyprint import key_fingerprint
from tapir.plugins.tape.labels import read_media_label, read_media_set_label
from tapir.plugins.tape.vault import vault_report

from .conftest import MakePool, add_volumes, make_tree

PASSPHRASE = "correct horse battery staple"


def _tapir(home: Path, *args: str) -> Result:
    result = CliRunner().invoke(
        build_cli(load_plugins()), ["--home", str(home), *args], catch_exceptions=False
    )
    assert result.exit_code == 0, f"{args}: {result.stdout} {result.stderr}"
    return result


def _set_label_on(vtl: VirtualLibrary, slot: int):
    with MediaChanger.open(vtl.changer_url) as changer:
        changer.load(slot, 0)
        try:
            with TapeDrive.open(vtl.drive_urls[0], block_size=0) as d:
                d.wait_ready(timeout=10)
                label = read_media_label(d, 65536)
                assert label is not None
                return read_media_set_label(d, label.block_size)
        finally:
            changer.unload(0)


def test_fingerprint_from_key_export_to_tape_vault_and_rebuild(
    app: Appliance, make_pool: MakePool, vtl: VirtualLibrary, home: Path, tmp_path: Path
) -> None:
    add_volumes(app, ["TAP001L8", "TAP002L8"])
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE + "\n")
    app.create_pool(
        "secure",
        "tape",
        encrypted=True,
        options={"changer": "lib1", "drives": "lib1-d0", "block_size": 65536},
    )
    make_pool("plain", drives="lib1-d1")
    fingerprint = app.pool_key_fingerprint("secure")
    assert fingerprint is not None and len(fingerprint) == 32
    int(fingerprint, 16)
    assert app.pool_key_fingerprint("plain") is None
    with pytest.raises(KeyError):
        app.pool_key_fingerprint("nope")

    keyfile = tmp_path / "secure.key"
    out = _tapir(
        home, "pool", "key", "export", "secure", "--out", str(keyfile),
        "--passphrase-file", str(secret),
    ).stdout  # fmt: skip
    assert f"key fingerprint: {fingerprint}" in out
    # The exported file opens exactly the keys with that fingerprint.
    assert PoolKeys.from_export(keyfile.read_bytes(), PASSPHRASE).fingerprint() == fingerprint

    source = make_tree(tmp_path / "src", 256 << 10)
    app.create_job("enc", "files", "secure", options={"paths": [str(source)]})
    app.create_job("clear", "files", "plain", options={"paths": [str(source)]})
    assert app.run_job("enc").state == "succeeded"
    assert app.run_job("clear").state == "succeeded"
    vols = app.plugin_context("tape").volumes
    assert vols is not None
    [enc_vol] = vols.list(pool="secure")
    [plain_vol] = vols.list(pool="plain")
    assert (enc_vol.label, plain_vol.label) == ("TAP001L8", "TAP002L8")

    enc_label = _set_label_on(vtl, 1)
    plain_label = _set_label_on(vtl, 2)
    assert enc_label is not None and enc_label.key_fingerprint == fingerprint
    assert plain_label is not None and plain_label.key_fingerprint is None

    # The vault report tells the operator which key opens a vaulted cartridge.
    for vol in (enc_vol, plain_vol):
        vols.save(dataclasses.replace(vols.get(vol.label) or vol, location="vault: box 7"))
    entries = {e.barcode: e for e in vault_report(app.plugin_context("tape"), recovery_points=list)}
    assert entries["TAP001L8"].key_fingerprint == fingerprint
    assert entries["TAP002L8"].key_fingerprint is None
    table = _tapir(home, "tape", "vault-report", "--pool", "secure").stdout
    assert fingerprint in table
    for vol in (enc_vol, plain_vol):
        vols.save(dataclasses.replace(vols.get(vol.label) or vol, location=vol.location))

    # A new appliance that has only the tapes: the rebuild names the key per media set.
    new_home = tmp_path / "new-home"
    fresh = Appliance.open(load_settings(new_home))
    fresh.initialize()
    fresh.register_device("lib1", "changer", vtl.changer_url)
    fresh.register_device("lib1-d0", "drive", vtl.drive_urls[0], changer="lib1", drive_number=0)
    fresh.close()
    report = json.loads(
        _tapir(
            new_home, "tape", "catalog", "rebuild", "--changer", "lib1", "--pool", "secure",
            "--json",
        ).stdout
    )  # fmt: skip
    [pool] = report["pools"]
    assert pool["pool"] == "secure" and pool["attached"]
    assert pool["key_fingerprints"] == {enc_vol.media_set: fingerprint}
    assert not any("fingerprint" in w or "written with key" in w for w in pool["warnings"])
    text = _tapir(
        new_home, "tape", "catalog", "rebuild", "--changer", "lib1", "--pool", "secure"
    ).stdout
    assert f"media set {enc_vol.media_set}: key fingerprint {fingerprint}" in text
    # Before the key is imported the new appliance already knows which key it needs.
    with Appliance.open(load_settings(new_home)) as again:
        assert again.pool_key_fingerprint("secure") == fingerprint

    # The key import on the new appliance confirms the same fingerprint.
    imported = _tapir(
        new_home, "pool", "key", "import", "secure", str(keyfile),
        "--passphrase-file", str(secret),
    ).stdout  # fmt: skip
    assert f"key fingerprint: {fingerprint}" in imported

    # The whole library at once: two tape pools on the same changer are attached
    # side by side (their options may be alike; their media ids differ).
    whole = tmp_path / "whole-home"
    with Appliance.open(load_settings(whole)) as third:
        third.initialize()
        third.register_device("lib1", "changer", vtl.changer_url)
        third.register_device("lib1-d0", "drive", vtl.drive_urls[0], changer="lib1", drive_number=0)
    report = json.loads(
        _tapir(whole, "tape", "catalog", "rebuild", "--changer", "lib1", "--json").stdout
    )
    assert sorted(p["pool"] for p in report["pools"]) == ["plain", "secure"]
    assert all(p["attached"] for p in report["pools"])


def test_fingerprint_of_damaged_or_plain_configs() -> None:
    keys = PoolKeys.generate()
    config = {"encrypted": True, "key_check": keys.check_value()}
    packed = msgpack.packb(config)
    assert key_fingerprint(packed) == keys.fingerprint() == config_key_fingerprint(config)
    assert key_fingerprint(None) is None
    assert key_fingerprint(msgpack.packb({"encrypted": False})) is None
    assert config_key_fingerprint({"encrypted": False}) is None
    with pytest.raises(TapirError, match="unreadable"):
        key_fingerprint(b"\xc1 not msgpack")
    with pytest.raises(TapirError, match="not a map"):
        key_fingerprint(msgpack.packb([1, 2]))
    with pytest.raises(TapirError, match="no valid key check"):
        key_fingerprint(msgpack.packb({"encrypted": True}))
    with pytest.raises(TapirError, match="no valid key check"):
        key_fingerprint(msgpack.packb({"encrypted": True, "key_check": b"short"}))
    with pytest.raises(TapirError, match="no key check"):
        config_key_fingerprint({"encrypted": True})
    # Another pool's keys give another fingerprint.
    assert PoolKeys.generate().fingerprint() != keys.fingerprint()


def test_an_encrypted_pool_with_a_damaged_key_check_labels_no_tape(
    app: Appliance, vtl: VirtualLibrary, tmp_path: Path
) -> None:
    add_volumes(app, ["TAP001L8"])
    app.create_pool(
        "secure",
        "tape",
        encrypted=True,
        options={"changer": "lib1", "drives": "lib1-d0", "block_size": 65536},
    )
    from tapir.plugins.tape.poolindex import open_index

    ctx = app.plugin_context("tape")
    index = open_index(ctx, "secure")
    try:
        raw = index.get_config("repository")
        assert raw is not None
        config = msgpack.unpackb(raw, raw=False)
        config["key_check"] = b"bad"
        index.put_config("repository", msgpack.packb(config))
    finally:
        index.close()
    source = make_tree(tmp_path / "src", 64 << 10)
    app.create_job("enc", "files", "secure", options={"paths": [str(source)]})
    run = app.run_job("enc")
    assert run.state == "failed"
    vols = ctx.volumes
    assert vols is not None
    row = vols.get("TAP001L8")
    assert row is not None and row.state == "scratch" and row.media_set is None


def test_rebuild_warns_when_a_set_names_other_keys_than_the_pool() -> None:
    from tapir.plugins.tape.rebuild import PoolRebuild, _check_fingerprints

    keys, other = PoolKeys.generate(), PoolKeys.generate()
    config = msgpack.packb({"encrypted": True, "key_check": keys.check_value()})
    result = PoolRebuild(pool="p", key_fingerprints={"s1": keys.fingerprint(), "s2": None})
    _check_fingerprints(result, config)
    assert result.warnings == []
    result.key_fingerprints["s3"] = other.fingerprint()
    _check_fingerprints(result, config)
    assert result.warnings == [
        f"media set s3 was written with key {other.fingerprint()}, but the pool's "
        f"repository config names key {keys.fingerprint()}"
    ]
    damaged = PoolRebuild(pool="p")
    _check_fingerprints(damaged, b"\xc1")
    assert damaged.warnings[0].startswith("key fingerprint not checked")
