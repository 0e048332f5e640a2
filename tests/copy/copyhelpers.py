"""Helpers of the copy tests: source trees, tree snapshots (content and metadata) and
what a copy job's run leaves in the catalog."""

from __future__ import annotations

import hashlib
import os
import random
import stat
from dataclasses import dataclass
from pathlib import Path

from tapir.appliance.catalog.models import RecoveryPoint, Run
from tapir.appliance.engine.service import Appliance

MiB = 1 << 20


def write_random(path: Path, rnd: random.Random, size: int) -> None:
    """``size`` incompressible bytes from ``rnd`` into ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(rnd.randbytes(size))


def make_tree(root: Path, seed: int, size: int = 2 * MiB) -> None:
    """Files, a sparse file, links, a fifo, an xattr, modes and times: all a copy must keep."""
    rnd = random.Random(seed)
    write_random(root / "data" / "big.bin", rnd, size)
    write_random(root / "data" / "small.txt", rnd, 100)
    (root / "empty").write_bytes(b"")
    with open(root / "sparse.img", "wb") as f:
        f.truncate(16 * MiB)
        f.seek(5 * MiB)
        f.write(rnd.randbytes(70_000))
    (root / "link").symlink_to("data/small.txt")
    os.link(root / "data" / "big.bin", root / "hardlink")
    os.mkfifo(root / "fifo")
    os.setxattr(root / "data" / "small.txt", "user.copy-test", b"kept")
    os.chmod(root / "data" / "small.txt", 0o640)
    os.chmod(root / "data", 0o750)
    os.utime(root / "data" / "small.txt", ns=(1_500_000_000_123_456_789, 1_600_000_000_987_654_321))


@dataclass(frozen=True)
class Entry:
    """A path's kind, content and metadata, as a restore must give them back."""

    kind: str
    mode: int
    uid: int
    gid: int
    mtime_ns: int | None
    size: int
    digest: str | None
    xattrs: tuple[tuple[str, bytes], ...]
    links: int


def snapshot(root: Path) -> dict[str, Entry]:
    """Every path below ``root`` (relative) with its :class:`Entry`."""
    out: dict[str, Entry] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        rel = str(path.relative_to(root))
        digest = None
        if stat.S_ISREG(st.st_mode):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        elif stat.S_ISLNK(st.st_mode):
            digest = os.readlink(path)
        xattrs: tuple[tuple[str, bytes], ...] = ()
        if not stat.S_ISLNK(st.st_mode) and not stat.S_ISFIFO(st.st_mode):
            xattrs = tuple(
                sorted(
                    (n, os.getxattr(path, n)) for n in os.listxattr(path) if n.startswith("user.")
                )
            )
        out[rel] = Entry(
            kind=stat.filemode(st.st_mode)[0],
            mode=stat.S_IMODE(st.st_mode),
            uid=st.st_uid,
            gid=st.st_gid,
            # Folders get new times as restore fills them; files and links must not.
            mtime_ns=None
            if stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode)
            else st.st_mtime_ns,
            size=st.st_size if not stat.S_ISDIR(st.st_mode) else 0,
            digest=digest,
            xattrs=xattrs,
            links=st.st_nlink if stat.S_ISREG(st.st_mode) else 1,
        )
    return out


def restored(app: Appliance, rp_id: str, target: Path, source: Path) -> Path:
    """Restore point ``rp_id`` into ``target``; returns where ``source`` landed there."""
    result = app.restore(rp_id, target=target)
    assert not result.failed, result.failed
    return target / str(source).lstrip("/")


def copies(app: Appliance, job: str) -> list[RecoveryPoint]:
    """The copy job's points, oldest first."""
    return sorted(app.recovery_points(job=job), key=lambda rp: (rp.created_at, rp.id))


def assert_ok(run: Run) -> None:
    """The run succeeded (its error otherwise)."""
    assert run.state == "succeeded", f"run {run.id} {run.state}: {run.error}"
