"""A pushed backup file still locked by QEMU for a moment after the job ended is waited
for (bounded), not reported as a failed backup."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest

from tapir.appliance.plugin_api import PluginError
from tapir.plugins.libvirt import push


def _locked(path: Path) -> subprocess.Popen[bytes]:
    """qemu-io holding ``path`` open for writing (QEMU's image lock), until stdin closes."""
    proc = subprocess.Popen(
        ["qemu-io", "-f", "qcow2", str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Wait until qemu-io holds the lock: a plain open is then refused.
    for _ in range(100):
        probe = subprocess.run(
            ["qemu-img", "info", str(path)], capture_output=True, text=True, check=False
        )
        if "lock" in probe.stderr:
            return proc
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("qemu-io never locked the image")


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "pushed.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "8M"], check=True)
    subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 1M 64k", str(path)],
        check=True,
        capture_output=True,
    )
    return path


def test_a_lock_released_soon_is_waited_for(image: Path) -> None:
    holder = _locked(image)
    # Give qemu-io time to take the lock, then let it go while changed_extents waits.
    release = threading.Timer(0.5, lambda: holder.communicate(b"quit\n"))
    release.start()
    try:
        size, extents = push.changed_extents(image, incremental=False)
    finally:
        release.join()
    assert size == 8 * 1024 * 1024
    assert [(e.offset, e.length) for e in extents] == [(1024 * 1024, 64 * 1024)]


def test_a_lock_never_released_fails_clearly(image: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(push, "LOCK_RELEASE_WAIT", 0.5)
    holder = _locked(image)
    try:
        with pytest.raises(PluginError, match='Failed to get shared "write" lock'):
            push.changed_extents(image, incremental=False)
    finally:
        holder.communicate(b"quit\n")
