"""Helpers of the appliance-level fault tests: the real ``tapir`` command, generated
trees, tree snapshots that compare content and metadata, and a reader of the disk
pool's pack format written from docs/format/disk-pool.md (not from the plugin's code,
so the tests check the specification too)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import stat
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TAPIR = Path(sys.executable).parent / "tapir"

# The pack layout of docs/format/disk-pool.md (little endian).
PACK_HEADER_SIZE = 32
ENTRY_HEADER = struct.Struct("<4s32sIII")  # magic, chunk id, length, payload crc, header crc
TABLE_ROW = struct.Struct("<32sQI")  # chunk id, entry offset, payload length
TRAILER = struct.Struct("<8sIQI")  # magic, entry count, table offset, crc


class Tapir:
    """The installed ``tapir`` console script, run as a subprocess on one home."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TAPIR_")}

    def command(self, *args: str) -> list[str]:
        """The argv of ``tapir --home HOME ARGS``."""
        return [str(TAPIR), "--home", str(self.home), *args]

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run a command to its end; with ``check``, a non-zero exit fails the test."""
        proc = subprocess.run(
            self.command(*args), capture_output=True, text=True, env=self.env, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"tapir {' '.join(args)} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    def json(self, *args: str) -> Any:
        """Run a listing with ``--json`` and decode it."""
        return json.loads(self(*args, "--json").stdout)

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        """Start a command in the background (its output is discarded)."""
        return subprocess.Popen(
            self.command(*args),
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def write_random(path: Path, rnd: random.Random, size: int) -> None:
    """Fill ``path`` with ``size`` incompressible bytes drawn from ``rnd``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 8 << 20)
            f.write(rnd.randbytes(n))
            left -= n


def make_tree(
    root: Path,
    seed: int,
    *,
    files: int,
    min_size: int,
    max_size: int,
    large: tuple[int, ...] = (),
    folders: int = 12,
) -> list[Path]:
    """A tree of ``files`` random files in ``folders`` folders, plus ``large`` big files,
    a symbolic link, a hard link, an empty file and an extended attribute.

    Returns the regular files written (the ones :func:`mutate` may change).
    """
    rnd = random.Random(seed)
    written: list[Path] = []
    for n in range(files):
        path = root / f"dir{n % folders:02d}" / f"file{n:04d}.bin"
        write_random(path, rnd, rnd.randint(min_size, max_size))
        written.append(path)
    for n, size in enumerate(large):
        path = root / "large" / f"large{n}.img"
        write_random(path, rnd, size)
        written.append(path)
    (root / "empty").write_bytes(b"")
    (root / "link-to-first").symlink_to(written[0].relative_to(root))
    os.link(written[1], root / "hardlink-to-second")
    os.setxattr(written[2], "user.tapir-test", b"kept across backup and restore")
    os.chmod(written[3], 0o640)
    return written


def mutate(files: list[Path], seed: int, count: int) -> list[Path]:
    """Rewrite ``count`` of ``files`` with new random data (sizes kept roughly)."""
    rnd = random.Random(seed)
    chosen = rnd.sample(files, count)
    for path in chosen:
        size = path.stat().st_size
        write_random(path, rnd, max(1, size + rnd.randint(-4096, 4096)))
    return chosen


@dataclass(frozen=True)
class Entry:
    """What a restore must give back for one path: kind, content and metadata."""

    kind: str
    mode: int
    uid: int
    gid: int
    mtime_ns: int | None  # None for symbolic links (lutimes is not always kept)
    size: int
    digest: str | None  # sha256 of a file's data, a link's target for a symlink
    xattrs: tuple[tuple[str, bytes], ...]
    inode_group: int | None  # files sharing an inode share this number


def _sha256(path: Path) -> str:
    flags = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NOATIME", 0)
    fd = os.open(path, flags)
    try:
        h = hashlib.sha256()
        while chunk := os.read(fd, 4 << 20):
            h.update(chunk)
        return h.hexdigest()
    finally:
        os.close(fd)


def _xattrs(path: Path) -> tuple[tuple[str, bytes], ...]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()
    return tuple(sorted((n, os.getxattr(path, n, follow_symlinks=False)) for n in names))


def snapshot(root: Path) -> dict[str, Entry]:
    """Every path below ``root`` (relative, ``.`` for the root) with what defines it."""
    out: dict[str, Entry] = {}
    inodes: dict[tuple[int, int], int] = {}
    paths = [root, *sorted(root.rglob("*"))]
    for path in paths:
        st = os.lstat(path)
        rel = "." if path == root else str(path.relative_to(root))
        group = None
        if stat.S_ISREG(st.st_mode):
            kind, digest = "file", _sha256(path)
            if st.st_nlink > 1:
                group = inodes.setdefault((st.st_dev, st.st_ino), len(inodes))
        elif stat.S_ISDIR(st.st_mode):
            kind, digest = "dir", None
        elif stat.S_ISLNK(st.st_mode):
            kind, digest = "symlink", os.readlink(path)
        else:
            kind, digest = "other", None
        out[rel] = Entry(
            kind=kind,
            mode=stat.S_IMODE(st.st_mode),
            uid=st.st_uid,
            gid=st.st_gid,
            mtime_ns=None if kind == "symlink" else st.st_mtime_ns,
            size=st.st_size if kind == "file" else 0,
            digest=digest,
            xattrs=_xattrs(path),
            inode_group=group,
        )
    return out


def tree_differences(expected: dict[str, Entry], actual: dict[str, Entry]) -> list[str]:
    """Human-readable differences between two snapshots (empty when equal)."""
    problems = [f"missing: {p}" for p in sorted(expected.keys() - actual.keys())]
    problems += [f"unexpected: {p}" for p in sorted(actual.keys() - expected.keys())]
    for path in sorted(expected.keys() & actual.keys()):
        want, got = expected[path], actual[path]
        if want != got:
            fields = [
                f"{name} {getattr(want, name)!r} != {getattr(got, name)!r}"
                for name in Entry.__dataclass_fields__
                if getattr(want, name) != getattr(got, name)
            ]
            problems.append(f"differs: {path}: {'; '.join(fields)}")
    return problems


def restored_root(target: Path, source: Path) -> Path:
    """Where a restore ``--to target`` puts the tree backed up from ``source``."""
    return target / str(source).lstrip("/")


def item_path(path: Path) -> str:
    """The path of a file inside a recovery point (absolute path without its '/')."""
    return str(path).lstrip("/")


@dataclass(frozen=True)
class PackEntry:
    """One chunk in a pack file: where its entry header starts and its payload length."""

    pack: Path
    chunk_id: bytes
    offset: int
    length: int

    @property
    def payload_offset(self) -> int:
        """First byte of the sealed blob."""
        return self.offset + ENTRY_HEADER.size


def pack_entries(pack: Path) -> list[PackEntry]:
    """The entries a pack's table lists, each checked against its entry header."""
    data = pack.read_bytes()
    if data[:8] != b"TAPIRPAK":
        raise ValueError(f"{pack} is not a pack file")
    magic, count, table_at, crc = TRAILER.unpack(data[-TRAILER.size :])
    if magic != b"TAPIREND":
        raise ValueError(f"{pack} has no trailer")
    table = data[table_at : table_at + count * TABLE_ROW.size]
    if zlib.crc32(table + data[-TRAILER.size : -4]) != crc:
        raise ValueError(f"{pack}: table crc mismatch")
    entries = []
    for row in range(count):
        cid, offset, length = TABLE_ROW.unpack_from(table, row * TABLE_ROW.size)
        emagic, ecid, elength, _, hcrc = ENTRY_HEADER.unpack_from(data, offset)
        assert emagic == b"TCHK" and ecid == cid and elength == length, pack
        assert zlib.crc32(data[offset : offset + 44]) == hcrc, pack
        entries.append(PackEntry(pack, cid, offset, length))
    return entries


def all_packs(pool: Path) -> list[Path]:
    """The committed pack files of a disk pool."""
    return sorted((pool / "packs").glob("*/*.pack"))


def iter_entries(pool: Path) -> Iterator[PackEntry]:
    """Every entry of every committed pack of a pool."""
    for pack in all_packs(pool):
        yield from pack_entries(pack)


def find_entry(pool: Path, chunk_id: bytes) -> PackEntry:
    """The pack entry holding ``chunk_id`` (the test fails when there is none)."""
    for entry in iter_entries(pool):
        if entry.chunk_id == chunk_id:
            return entry
    raise AssertionError(f"chunk {chunk_id.hex()} is in no pack of {pool}")


def flip_byte(path: Path, offset: int) -> None:
    """Invert one bit of the byte at ``offset`` in place (size and mtime order kept)."""
    with open(path, "r+b") as f:
        f.seek(offset)
        old = f.read(1)
        assert len(old) == 1, f"{path} has no byte at {offset}"
        f.seek(offset)
        f.write(bytes([old[0] ^ 0x10]))


def pool_bytes(pool: Path) -> int:
    """Bytes the pool's packs take (what gc can reduce)."""
    return sum(p.stat().st_size for p in all_packs(pool))
