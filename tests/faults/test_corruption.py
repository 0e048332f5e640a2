"""Damage on the medium, through the real command: a flipped byte in a chunk's payload,
in its framing, and a deleted pack file. Verify names the chunk and the files, restore
fails for exactly those files (leaving no wrong file) and restores every other one."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import blake3
import pytest

from .helpers import (
    Entry,
    PackEntry,
    Tapir,
    all_packs,
    find_entry,
    flip_byte,
    item_path,
    make_tree,
    pack_entries,
    restored_root,
    snapshot,
    tree_differences,
)

INCOMPLETE = ".tapir-incomplete"  # docs/plugins/files.md: a damaged file's kept partial


@dataclass
class Backed:
    """A backed-up tree whose victim file is one chunk we can find in the packs."""

    src: Path
    pool: Path
    point: str
    state: dict[str, Entry]
    victim: Path
    entry: PackEntry


@pytest.fixture
def backed(tapir: Tapir, tmp_path: Path) -> Backed:
    src = tmp_path / "src"
    # Files below the smallest chunk size are one chunk each; with no encryption the
    # chunk id is the plain BLAKE3 of the file, so the test can find it in the packs.
    files = make_tree(src, 5, files=60, min_size=16 << 10, max_size=256 << 10, large=(6 << 20,))
    pool = tmp_path / "pool"
    tapir("pool", "create", "vault", "--path", str(pool), "--no-encrypt")
    tapir("job", "create", "docs", "--plugin", "files", "--pool", "vault", "--path", str(src))
    tapir("job", "run", "docs")
    (point,) = tapir.json("backups")
    victim = files[7]
    entry = find_entry(pool, blake3.blake3(victim.read_bytes()).digest())
    return Backed(src, pool, point["id"], snapshot(src), victim, entry)


def _problems_for(report: dict, chunk_id: bytes) -> list[dict]:
    return [p for p in report["problems"] if p["chunk_id"] == chunk_id.hex()]


def _verify_fails(tapir: Tapir, target: str) -> dict:
    proc = tapir("verify", target, "--json", check=False)
    assert proc.returncode == 1, proc
    assert proc.stderr.splitlines()[-1].startswith("error: "), proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is False
    return report


def _assert_names_victim(
    tapir: Tapir, b: Backed, *words: str, targets: tuple[str, ...] = ("vault",)
) -> None:
    """verify BACKUP and verify POOL exit 1 and name the chunk, the point and the file."""
    for target in (b.point, *targets):
        report = _verify_fails(tapir, target)
        (problem,) = _problems_for(report, b.entry.chunk_id)
        assert problem["paths"] == [item_path(b.victim)], problem
        assert problem["recovery_points"] == [b.point], problem
        for word in words:
            assert word in problem["message"], problem
    if not targets:
        return
    text = tapir("verify", b.point, check=False)
    assert f"problem: chunk {b.entry.chunk_id.hex()}: " in text.stdout
    assert f"  file {item_path(b.victim)}\n" in text.stdout


def _assert_restore_spares_only_the_victim(tapir: Tapir, b: Backed, target: Path) -> None:
    proc = tapir("restore", b.point, "--to", str(target), check=False)
    assert proc.returncode == 1, proc
    assert item_path(b.victim) in proc.stderr, proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("error: "), proc.stderr
    root = restored_root(target, b.src)
    rel = str(b.victim.relative_to(b.src))
    assert not (root / rel).exists(), "a damaged file was restored under its own name"
    got = snapshot(root)
    got.pop(rel + INCOMPLETE, None)  # the documented partial, named as such
    expected = dict(b.state)
    del expected[rel]
    assert tree_differences(expected, got) == []

    # Restoring only that file fails the same way; nothing else is written.
    alone = target.parent / (target.name + "-alone")
    proc = tapir("restore", b.point, item_path(b.victim), "--to", str(alone), check=False)
    assert proc.returncode == 1, proc
    assert item_path(b.victim) in proc.stderr
    assert not (restored_root(alone, b.src) / rel).exists()


def test_flipped_payload_byte(tapir: Tapir, backed: Backed, tmp_path: Path) -> None:
    b = backed
    flip_byte(b.entry.pack, b.entry.payload_offset + b.entry.length // 2)
    _assert_names_victim(tapir, b, "corrupt")
    _assert_restore_spares_only_the_victim(tapir, b, tmp_path / "restore")
    # gc must not paper over damage: it keeps the damaged chunk, verify still fails.
    tapir("gc", "vault")
    _verify_fails(tapir, "vault")


#: Bytes of an entry's 48-byte header (docs/format/disk-pool.md): each is covered
#: by the header crc, so damage anywhere in it must be caught before the payload is used.
FRAMING = {"entry magic": 1, "chunk id": 4 + 17, "payload length": 37, "header crc": 45}


def test_flipped_framing_byte(tapir: Tapir, backed: Backed, tmp_path: Path) -> None:
    b = backed
    for n, at in enumerate(FRAMING.values()):
        flip_byte(b.entry.pack, b.entry.offset + at)
        # The message says where: the pack file and the entry's offset.
        where = (b.entry.pack.stem, str(b.entry.offset))
        if n == 0:  # pool-wide verify and restore take the same read path: once is enough
            _assert_names_victim(tapir, b, *where)
            _assert_restore_spares_only_the_victim(tapir, b, tmp_path / "restore")
        else:
            _assert_names_victim(tapir, b, *where, targets=())
        flip_byte(b.entry.pack, b.entry.offset + at)  # repaired: the next field's turn
    assert tapir.json("verify", "vault")["ok"]


def test_deleted_pack(tapir: Tapir, backed: Backed, tmp_path: Path) -> None:
    b = backed
    # A second point (an incremental: it references the first one's chunks) whose new
    # chunks and item list land in a second pack.
    (b.src / "later.bin").write_bytes(b"written after the first backup\n" * 1000)
    tapir("job", "run", "docs")
    second = next(p["id"] for p in tapir.json("backups") if p["id"] != b.point)
    assert len(all_packs(b.pool)) == 2
    lost = {e.chunk_id for e in pack_entries(b.entry.pack)}
    b.entry.pack.unlink()

    report = _verify_fails(tapir, "vault")
    named = {p["chunk_id"] for p in report["problems"] if p["chunk_id"]}
    assert named == {cid.hex() for cid in lost}, "every chunk of the pack, and only those"
    (problem,) = _problems_for(report, b.entry.chunk_id)
    assert problem["paths"] == [item_path(b.victim)], problem
    assert problem["recovery_points"] == [second], problem
    assert b.entry.pack.stem in problem["message"], problem
    # The first point's item list was in that pack too: said so, not silently skipped.
    (listing,) = [p for p in report["problems"] if p["chunk_id"] is None]
    assert listing["recovery_points"] == [b.point], listing
    assert "item list" in listing["message"] and "unreadable" in listing["message"]

    proc = tapir("restore", second, item_path(b.victim), "--to", str(tmp_path / "r"), check=False)
    assert proc.returncode == 1 and item_path(b.victim) in proc.stderr, proc
    # What the second pack holds still restores.
    later = tmp_path / "later"
    tapir("restore", second, item_path(b.src / "later.bin"), "--to", str(later))
    restored = restored_root(later, b.src) / "later.bin"
    assert restored.read_bytes() == (b.src / "later.bin").read_bytes()
