"""Facts about the benchmark machine, and dropping the page cache between steps."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

DROP_CACHES = Path("/proc/sys/vm/drop_caches")


def drop_caches() -> bool:
    """Flush dirty pages and drop the page cache; False when not permitted here."""
    os.sync()
    try:
        DROP_CACHES.write_text("3\n")
    except OSError:
        return False
    return True


def _first_line(argv: list[str]) -> str:
    if shutil.which(argv[0]) is None:
        return "not installed"
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def tool_versions(tapir: Path | None = None) -> dict[str, str]:
    """Version strings of every tool the benchmark can run."""
    versions = {
        "restic": _first_line(["restic", "version"]),
        "borg": _first_line(["borg", "--version"]),
        "zstd": _first_line(["zstd", "--version"]),
        "tar": _first_line(["tar", "--version"]),
        "cp": _first_line(["cp", "--version"]),
        "python": platform.python_version(),
    }
    if tapir is not None:
        versions["tapir"] = _tapir_version(tapir)
    return versions


def _tapir_version(tapir: Path) -> str:
    if not tapir.exists():
        return "not installed"
    python = tapir.parent / "python"
    out = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('tapir-backup'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return f"tapir-backup {out.stdout.strip() or 'unknown'}, {_git_commit(tapir.parents[2])}"


def _git_commit(repo: Path) -> str:
    """The commit the benchmarked Tapir was built from, marked when the tree has edits."""
    head = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    if head.returncode != 0:
        return "commit unknown"
    dirty = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    )
    edits = " with uncommitted edits" if dirty.stdout.strip() else ""
    return f"commit {head.stdout.strip()}{edits}"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def _disk(path: Path) -> str:
    out = subprocess.run(
        ["df", "-h", "--output=source,fstype,size,avail", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = out.stdout.strip().splitlines()
    if len(lines) < 2:
        return "unknown"
    source, fstype, size, avail = lines[1].split()
    device = Path(source).name
    rotational = Path(f"/sys/block/{device}/queue/rotational")
    kind = ""
    if rotational.exists():
        kind = ", rotational" if rotational.read_text().strip() == "1" else ", non-rotational"
    return f"{source} ({fstype}{kind}), {size} total, {avail} free"


def machine_info(work: Path) -> dict[str, str]:
    """CPU, RAM, the disk holding ``work`` and the kernel, as display strings."""
    return {
        "cpu": f"{_cpu_model()} (nproc={len(os.sched_getaffinity(0))})",
        "ram": f"{_mem_total() / 2**30:.1f} GiB",
        "disk": _disk(work),
        "kernel": f"{platform.system()} {platform.release()}",
        "os": _os_release(),
    }


def _os_release() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return "unknown"
