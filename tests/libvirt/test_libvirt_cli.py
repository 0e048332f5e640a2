"""The operator's path: `tapir endpoint add --plugin libvirt`, rule-based job, runs, restore."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from libvirt_helpers import MiB, guest_write, live_disk, qemu_img_compare

from tapir.plugins.libvirt.domainxml import METADATA_NS

TAPIR = Path(sys.executable).parent / "tapir"
PROD = f'<tapir:backup xmlns:tapir="{METADATA_NS}"><tapir:tag>prod</tapir:tag></tapir:backup>'


def _tapir(home: Path, *args: str) -> str:
    env = {**os.environ, "TAPIR_HOME": str(home)}
    env.pop("TAPIR_DATABASE_URL", None)
    proc = subprocess.run([str(TAPIR), *args], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, f"tapir {args}: {proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_endpoint_job_by_tag_runs_and_restore(libvirtd, make_domain, tmp_path):
    home = tmp_path / "home"
    tagged = make_domain("-p", metadata=PROD, writes=((0x11, 0, MiB),))
    untagged = make_domain("-u")
    _tapir(home, "init")
    _tapir(home, "endpoint", "add", "kvm", "--plugin", "libvirt", "--address", libvirtd.uri)
    _tapir(home, "endpoint", "test", "kvm")
    found = _tapir(home, "endpoint", "discover", "kvm")
    assert tagged.name() in found and untagged.name() in found
    # `job create --rule` would also store the rules as the path option "include"
    # (a core bug reported to the lead), so the rule is added after creation.
    _tapir(
        home, "job", "create", "kvm", "--plugin", "libvirt", "--pool", "default",
        "--endpoint", "kvm",
    )  # fmt: skip
    _tapir(home, "job", "rules", "kvm", "--rule", "tag=prod")
    preview = _tapir(home, "job", "preview", "kvm")
    assert tagged.name() in preview and untagged.name() not in preview

    _tapir(home, "job", "run", "kvm", "--level", "full")
    guest_write(tagged, 0xAB, 4 * MiB, 64 * 1024)
    _tapir(home, "job", "run", "kvm", "--level", "incremental")

    target = tmp_path / "restored"
    _tapir(home, "restore", "kvm:latest", "--to", str(target), "--option", "format=raw")
    tagged.suspend()
    try:
        restored = target / f"{tagged.name()}-vda.raw"
        compared = qemu_img_compare(restored, "raw", live_disk(tagged), "qcow2")
    finally:
        tagged.resume()
    assert compared.returncode == 0, compared.stdout + compared.stderr
