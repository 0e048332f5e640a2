"""Building partitioned test disks from scratch with the file systems' own tools.

Every file system is made in a partition-sized file (no mount, no loop device) and
then copied, holes kept, into a disk file at its partition's offset; ``sfdisk``
writes the partition table into the plain disk file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

MiB = 1 << 20
GiB = 1 << 30

#: Small XFS file systems are refused outside xfstests; the variable lifts that limit.
_XFS_ENV = {"TEST_DIR": "/nonexistent", "TEST_DEV": "/dev/null"}


@dataclass
class Part:
    """One partition to make: its file system, size and content folder."""

    fs: str  # ext4, ntfs, xfs, fat, btrfs, raw (left unformatted), prebuilt (source: a file)
    size: int
    source: Path | None = None
    offset: int = 0  # 0: right after the previous partition (1 MiB aligned)
    label: str = ""
    number: int = field(default=0, init=False)


def run(*args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        list(args),
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )
    assert proc.returncode == 0, f"{' '.join(args)}: {proc.stderr or proc.stdout}"
    return proc.stdout


def copy_sparse(src: Path, dst: Path, offset: int) -> None:
    """Copy ``src`` into ``dst`` at ``offset``, writing only its data areas."""
    with open(src, "rb") as fin:
        fd_out = os.open(dst, os.O_WRONLY)
        try:
            size = os.fstat(fin.fileno()).st_size
            pos = 0
            while pos < size:
                try:
                    start = os.lseek(fin.fileno(), pos, os.SEEK_DATA)
                except OSError:
                    break  # only a hole is left
                end = os.lseek(fin.fileno(), start, os.SEEK_HOLE)
                fin.seek(start)
                while start < end:
                    block = fin.read(min(8 * MiB, end - start))
                    os.pwrite(fd_out, block, offset + start)
                    start += len(block)
                pos = end
        finally:
            os.close(fd_out)


def _ntfs_files(source: Path) -> list[Path]:
    # ntfscp cannot make folders: an NTFS partition gets the top-level files only.
    return sorted(p for p in source.iterdir() if p.is_file() and not p.is_symlink())


def _xfs_proto(source: Path, out: Path) -> Path:
    """An mkfs.xfs prototype file describing ``source`` (modes and owners kept)."""

    def entry(path: Path, depth: int) -> list[str]:
        st = path.lstat()
        perm = f"{st.st_mode & 0o777:03o}"
        suid = "u" if st.st_mode & 0o4000 else "-"
        sgid = "g" if st.st_mode & 0o2000 else "-"
        pad = "  " * depth
        if path.is_symlink():
            return [
                f"{pad}{path.name} l{suid}{sgid}{perm} {st.st_uid} {st.st_gid} {os.readlink(path)}"
            ]
        if path.is_dir():
            lines = [f"{pad}{path.name} d{suid}{sgid}{perm} {st.st_uid} {st.st_gid}"]
            for child in sorted(path.iterdir()):
                lines += entry(child, depth + 1)
            return [*lines, f"{pad}$"]
        return [f"{pad}{path.name} -{suid}{sgid}{perm} {st.st_uid} {st.st_gid} {path}"]

    root = source.stat()
    lines = ["/dev/null", "0 0", f"d--{root.st_mode & 0o777:03o} 0 0"]
    for child in sorted(source.iterdir()):
        lines += entry(child, 1)
    lines.append("$")
    out.write_text("\n".join(lines) + "\n")
    return out


def make_fs(part: Part, path: Path, start: int) -> None:
    """Make ``part``'s file system in the file ``path`` (``start``: its disk offset)."""
    with open(path, "wb") as f:
        f.truncate(part.size)
    src = part.source
    label = part.label or part.fs
    if part.fs == "ext4":
        args = ["mkfs.ext4", "-q", "-F", "-L", label, "-E", "root_owner=0:0"]
        run(*args, *(["-d", str(src)] if src else []), str(path))
    elif part.fs == "ntfs":
        run("mkntfs", "-F", "-Q", "-q", "-L", label, "-p", str(start // 512), str(path))
        for file in _ntfs_files(src) if src else []:
            run("ntfscp", "-q", "-t", str(path), str(file), file.name)
    elif part.fs == "xfs":
        proto = _xfs_proto(src, path.with_suffix(".proto")) if src else None
        args = ["mkfs.xfs", "-q", "-f", "-L", label[:12]]
        run(*args, *(["-p", str(proto)] if proto else []), str(path), env=_XFS_ENV)
    elif part.fs == "fat":
        run("mkfs.fat", "-F", "32", "-n", label.upper()[:11], str(path))
        if src:
            for child in sorted(src.iterdir()):
                run("mcopy", "-s", "-p", "-m", "-i", str(path), str(child), "::/")
    elif part.fs == "btrfs":
        args = ["mkfs.btrfs", "-q", "-f", "-L", label]
        run(*args, *(["--rootdir", str(src)] if src else []), str(path))
    elif part.fs == "prebuilt":  # ``source`` is the partition's whole content
        assert src is not None
        copy_sparse(src, path, 0)
    elif part.fs != "raw":
        raise ValueError(f"unknown file system {part.fs}")


_TYPES = {
    "ext4": "L",
    "xfs": "L",
    "btrfs": "L",
    "raw": "L",
    "ntfs": "7",
    "fat": "c",
    "prebuilt": "8e",
}
_GPT_TYPES = {"ntfs": "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7", "fat": "U", "prebuilt": "lvm"}


def build_disk(path: Path, size: int, parts: list[Part], table: str = "gpt") -> Path:
    """A sparse disk file of ``size`` bytes with ``parts`` in a ``gpt`` or ``dos`` table."""
    with open(path, "wb") as f:
        f.truncate(size)
    script = [f"label: {table}", "unit: sectors"]
    start = MiB
    for number, part in enumerate(parts, 1):
        part.number = number
        start = part.offset or start
        kind = _GPT_TYPES.get(part.fs, "L") if table == "gpt" else _TYPES[part.fs]
        script.append(f"start={start // 512}, size={part.size // 512}, type={kind}")
        part.offset = start
        start += part.size
    proc = subprocess.run(
        ["sfdisk", "--no-reread", "--no-tell-kernel", "-q", str(path)],
        input="\n".join(script) + "\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    work = path.parent / f".{path.name}.parts"
    work.mkdir(exist_ok=True)
    try:
        for part in parts:
            part_file = work / f"p{part.number}.img"
            make_fs(part, part_file, part.offset)
            copy_sparse(part_file, path, part.offset)
    finally:
        shutil.rmtree(work)
    assert path.stat().st_size == size
    return path


def make_whole_fs(path: Path, part: Part) -> Path:
    """A disk without a partition table: one file system over the whole disk."""
    make_fs(part, path, 0)
    return path


def qcow2(raw: Path, out: Path) -> Path:
    run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(out))
    return out
