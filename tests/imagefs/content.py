"""The files the test disks hold: unicode names, a deep path, a sparse file, a link."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

MiB = 1 << 20
MTIME = 1_600_000_000  # 2020-09-13, whole seconds: FAT keeps two-second steps

DEEP = "a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p"
UNICODE = "Grüße-日本語-ñ.txt"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(MiB):
            h.update(block)
    return h.hexdigest()


def make_tree(root: Path, *, seed: int = 1, links: bool = True) -> dict[str, str]:
    """Fill ``root``; returns each regular file's relative path and sha256."""
    rng = random.Random(seed)
    files: dict[str, bytes | None] = {
        "hello.txt": b"hello from the guest\n",
        UNICODE: "unicode content ✓\n".encode(),
        "report.bin": rng.randbytes(2 * MiB + 123),
        "etc/hostname": b"web1\n",
        "etc/app/config.ini": b"[main]\nkey = value\n",
        f"{DEEP}/deep.txt": b"at the bottom\n",
        "home/user/Документы/план.txt": "план работ\n".encode(),
        "empty": b"",
        "$user-data.bin": b"a user's file, not an NTFS metafile\n",
    }
    sums: dict[str, str] = {}
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data or b"")
        sums[rel] = sha256(data or b"")
    # A sparse file: a hole, then data at its end.
    sparse = root / "sparse.img"
    tail = rng.randbytes(4096)
    with open(sparse, "wb") as f:
        f.truncate(6 * MiB)
        f.seek(6 * MiB - len(tail))
        f.write(tail)
    sums["sparse.img"] = file_sha256(sparse)
    os.chmod(root / "etc/app/config.ini", 0o640)
    os.chown(root / "home/user", 1000, 1000)
    os.chown(root / "home/user/Документы/план.txt", 1000, 1000)
    if links:
        os.symlink("etc/hostname", root / "hostname-link")
    for path in [*root.rglob("*"), root]:
        if not path.is_symlink():
            os.utime(path, (MTIME, MTIME))
    return sums
