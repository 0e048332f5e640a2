"""Test doubles for VDDK, which is proprietary, and for nbdkit's vddk plugin, which
Debian's nbdkit does not ship (see docs/plugins/vmware.md, "Transports").

``fake_vixdisklib.c`` stands in for VMware's libvixDiskLib.so; ``fake_nbdkit_vddk.c``
for nbdkit-vddk-plugin.so (same parameters, same library probing, errors in the
real plugin's words). The real nbdkit and libnbd run around them.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class FakeVddk:
    """A VDDK folder holding the fake library, and the stand-in nbdkit plugin."""

    libdir: Path
    plugin: Path


def _gcc(source: str, output: Path, *libs: str) -> None:
    subprocess.run(
        ["gcc", "-Wall", "-Wextra", "-Werror", "-O1", "-shared", "-fPIC",
         "-I", str(HERE), "-o", str(output), str(HERE / source), *libs],
        check=True,
    )  # fmt: skip


def build_fake_vddk(dest: Path) -> FakeVddk:
    """Compile both doubles under ``dest``: ``dest/vddk/lib64/libvixDiskLib.so.8``."""
    lib64 = dest / "vddk" / "lib64"
    lib64.mkdir(parents=True)
    # VDDK 8's soname, the first one nbdkit's plugin probes.
    _gcc("fake_vixdisklib.c", lib64 / "libvixDiskLib.so.8")
    plugin = dest / "nbdkit-vddk-plugin.so"
    _gcc("fake_nbdkit_vddk.c", plugin, "-ldl")
    return FakeVddk(libdir=dest / "vddk", plugin=plugin)
