"""Running ``qemu-img`` with errors an operator can act on."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from tapir.appliance.plugin_api import PluginError

QEMU_UTILS_HINT = "install the Debian package qemu-utils"


def qemu_img_binary() -> str:
    """The path of ``qemu-img``, or a :class:`PluginError` saying how to get it."""
    found = shutil.which("qemu-img")
    if found is None:
        raise PluginError(f"qcow2 images need qemu-img, which is not installed ({QEMU_UTILS_HINT})")
    return found


def run_qemu_img(args: list[str], what: str) -> str:
    """Run ``qemu-img ARGS`` and return its standard output; ``what`` names the job in errors."""
    proc = subprocess.run(
        [qemu_img_binary(), *args], capture_output=True, text=True, check=False, stdin=None
    )
    if proc.returncode != 0:
        detail = proc.stderr.strip() or f"exit status {proc.returncode}"
        raise PluginError(f"{what} failed: {detail}")
    return proc.stdout


def qemu_img_json(args: list[str], what: str) -> object:
    """Run a ``qemu-img ... --output=json`` command and parse its answer."""
    out = run_qemu_img([*args[:1], "--output=json", *args[1:]], what)
    try:
        return json.loads(out)
    except json.JSONDecodeError as exc:
        raise PluginError(f"{what}: qemu-img printed something that is not JSON ({exc})") from None


def qemu_img_info(path: Path, fmt: str) -> dict[str, object]:
    """``qemu-img info`` of one image opened as ``fmt`` (never probed: probing is unsafe)."""
    info = qemu_img_json(["info", "-f", fmt, str(path)], f"reading the header of {path}")
    if not isinstance(info, dict):
        raise PluginError(f"reading the header of {path}: unexpected qemu-img answer")
    return info


def convert_raw_to_qcow2(raw: Path, qcow2: Path) -> None:
    """Write ``qcow2`` from the raw image ``raw`` (zero areas stay unallocated)."""
    run_qemu_img(
        ["convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2)],
        f"converting the restored disk to qcow2 ({qcow2})",
    )
