"""Operator mistakes and a catalog that cannot be reached, through the real command:
an in-place restore over newer files, a wrong backup id, a path the backup does not
hold, a dead or damaged catalog. Each gives one clear ``error:`` line and exit 1 (or
keeps what it must keep), and none of them writes or loses anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import Entry, Tapir, item_path, make_tree, restored_root, snapshot, tree_differences


@pytest.fixture
def backed(tapir: Tapir, tmp_path: Path) -> tuple[Path, list[Path]]:
    src = tmp_path / "src"
    files = make_tree(src, 21, files=16, min_size=1 << 10, max_size=64 << 10)
    tapir("job", "create", "docs", "--plugin", "files", "--pool", "default", "--path", str(src))
    tapir("job", "run", "docs")
    return src, files


def _one_error_line(proc, *words: str) -> str:
    assert proc.returncode == 1, proc
    assert "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.splitlines()[-1]
    assert last.startswith("error: "), proc.stderr
    for word in words:
        assert word in last, last
    return last


def test_in_place_restore_keeps_newer_files(tapir: Tapir, backed: tuple[Path, list[Path]]) -> None:
    src, files = backed
    backed_up = snapshot(src)
    newer, deleted = files[4], files[5]
    newer.write_bytes(b"edited after the backup: must survive an in-place restore\n")
    deleted.unlink()
    edited = newer.read_bytes()

    for policy in ([], ["--overwrite", "never"], ["--overwrite", "older"]):
        out = tapir("restore", "docs:latest", "--in-place", *policy).stdout
        assert "skipped " in out, out
        assert newer.read_bytes() == edited, policy
    # What was missing came back, whole; no other file changed.
    rel = str(newer.relative_to(src))
    assert tree_differences(_files(backed_up), _files(snapshot(src))) == [
        f"differs: {rel}: mtime_ns {backed_up[rel].mtime_ns} != {newer.stat().st_mtime_ns}; "
        f"size {backed_up[rel].size} != {len(edited)}; "
        f"digest {backed_up[rel].digest!r} != {snapshot(src)[rel].digest!r}"
    ]

    # Only when asked for is the newer file replaced by the backed-up one.
    tapir("restore", "docs:latest", item_path(newer), "--in-place", "--overwrite", "always")
    assert tree_differences(_files(backed_up), _files(snapshot(src))) == []


def _files(snap: dict[str, Entry]) -> dict[str, Entry]:
    # Folder times change when an entry is added in place; files are what must match.
    return {path: entry for path, entry in snap.items() if entry.kind != "dir"}


def test_wrong_backup_reference(tapir: Tapir, backed: tuple[Path, list[Path]], tmp_path: Path):
    target = tmp_path / "restore"
    for ref, words in [
        ("0123456789abcdef0123456789abcdef", ("no recovery point",)),
        ("0123456789", ("no recovery point",)),
        ("abc", ("6 characters",)),
        ("nojob:latest", ("no job named 'nojob'",)),
    ]:
        proc = tapir("restore", ref, "--to", str(target), check=False)
        _one_error_line(proc, *words)
        assert proc.stdout == ""
        assert not target.exists(), ref


def test_path_not_in_the_backup(
    tapir: Tapir, backed: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    src, files = backed
    target = tmp_path / "restore"
    missing = item_path(src / "no-such-file")
    proc = tapir("restore", "docs:latest", missing, "--to", str(target), check=False)
    _one_error_line(proc, missing, "not in recovery point")
    # One good path and one missing: refused as a whole, before anything is written.
    good = item_path(files[0])
    proc = tapir("restore", "docs:latest", good, missing, "--to", str(target), check=False)
    _one_error_line(proc, missing)
    assert not restored_root(target, src).exists()
    run = next(r for r in tapir.json("runs") if r["kind"] == "restore")
    assert run["state"] == "failed" and missing in run["error"], run
    # A leading slash, or a folder, is a path of the backup like any other.
    tapir("restore", "docs:latest", "/" + good, "--to", str(target))
    assert (restored_root(target, src) / files[0].relative_to(src)).read_bytes() == (
        files[0].read_bytes()
    )


def test_unreachable_catalog_server(tapir: Tapir) -> None:
    # Nothing listens on port 1 of this host: the connection is refused at once.
    url = "postgresql://tapir:secret@127.0.0.1:1/tapir"
    for args in (("runs",), ("backups",), ("restore", "docs:latest", "--to", "/nonexistent")):
        proc = tapir("--database-url", url, *args, check=False)
        _one_error_line(proc, "catalog")
        assert "secret" not in proc.stderr  # the password is never shown


def test_damaged_catalog_file(tapir: Tapir, backed: tuple[Path, list[Path]]) -> None:
    saved = {p.name: p.read_bytes() for p in tapir.home.glob("catalog.db*")}
    catalog = tapir.home / "catalog.db"
    for name in saved:
        if name != catalog.name:
            (tapir.home / name).unlink()
    damaged = b"this is not an SQLite database " * 200 + saved[catalog.name][6200:]
    catalog.write_bytes(damaged)
    for args in (("runs",), ("backups",), ("init",), ("job", "run", "docs")):
        proc = tapir(*args, check=False)
        _one_error_line(proc, "catalog")
        # Never "repaired" by starting a new, empty catalog over the old file.
        assert catalog.read_bytes() == damaged, args
    for name, data in saved.items():
        (tapir.home / name).write_bytes(data)
    assert [p["job"] for p in tapir.json("backups")] == ["docs"]
