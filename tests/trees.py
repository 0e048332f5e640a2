"""Source trees for end-to-end tests, and their contents for comparison after a restore."""

from __future__ import annotations

import os
from pathlib import Path


def make_tree(root: Path, size: int, seed: int = 0, text_repeat: int = 3000) -> Path:
    """Incompressible data of ``size`` bytes, a text file, an empty file and a symlink."""
    (root / "docs").mkdir(parents=True, exist_ok=True)
    (root / "docs/report.txt").write_bytes(f"numbers {seed}\n".encode() * text_repeat)
    (root / "data.bin").write_bytes(os.urandom(size))
    (root / "empty").write_bytes(b"")
    if not (root / "link").is_symlink():
        os.symlink("docs/report.txt", root / "link")
    return root


def tree(root: Path) -> dict[str, bytes]:
    """Relative path -> content of every file below ``root`` (symlinks as their target)."""
    out: dict[str, bytes] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = b"-> " + os.readlink(p).encode()
        elif p.is_file():
            out[rel] = p.read_bytes()
    return out
