"""The benchmark data generator is deterministic and its mutation does what it reports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import datagen
import pytest
import treehash

TINY = 0.004  # about 8 MiB: fast, yet every part of the data set is present


def _digest(root: Path) -> dict[str, treehash.Entry]:
    return treehash.digest_tree(root)


def _contents(entries: dict[str, treehash.Entry]) -> dict[str, tuple[str, int, str]]:
    return {k: (e.kind, e.size, e.digest) for k, e in entries.items()}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pristine") / "data"
    datagen.generate(root, seed=7, scale=TINY)
    return root


def test_same_seed_gives_same_bytes(pristine: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    datagen.generate(again, seed=7, scale=TINY)
    assert _contents(_digest(again)) == _contents(_digest(pristine))


def test_other_seed_gives_other_bytes(pristine: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    datagen.generate(other, seed=8, scale=TINY)
    mine, theirs = _contents(_digest(pristine)), _contents(_digest(other))
    assert mine["image/disk.img"] != theirs["image/disk.img"]


def test_data_set_has_every_part(pristine: Path) -> None:
    image = pristine / "image" / "disk.img"
    assert image.stat().st_size == datagen._scaled(datagen.IMAGE_BYTES, TINY, datagen.IMAGE_REGION)
    # The image is sparse: fewer blocks allocated than its length.
    assert image.stat().st_blocks * 512 < image.stat().st_size
    data = image.read_bytes()
    assert data.count(bytes(datagen.IMAGE_REGION)) > 0  # long zero runs exist
    small = [p for p in (pristine / "small").rglob("*") if p.is_file()]
    assert len(small) == int(datagen.SMALL_FILES * TINY)
    assert all(100 <= p.stat().st_size <= 16 * 1024 for p in small)
    assert any((pristine / "text" / "logs").iterdir())
    assert any((pristine / "incompressible").iterdir())


def test_generate_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    keep = tmp_path / "keep.txt"
    keep.write_text("precious")
    with pytest.raises(FileExistsError):
        datagen.generate(tmp_path, seed=1, scale=TINY)
    assert keep.read_text() == "precious"
    assert sorted(os.listdir(tmp_path)) == ["keep.txt"]


def test_generate_rejects_a_bad_scale(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="scale"):
        datagen.generate(tmp_path / "x", seed=1, scale=0)


def _copy(src: Path, dst: Path) -> None:
    subprocess.run(["cp", "-a", f"{src}/.", f"{dst}/"], check=True)


def test_mutation_changes_what_it_reports(pristine: Path, tmp_path: Path) -> None:
    before = _digest(pristine)
    work = tmp_path / "work"
    work.mkdir()
    _copy(pristine, work)
    summary = datagen.mutate(work, seed=7)
    after = _digest(work)

    files_before = {k for k, e in before.items() if e.kind == "file"}
    files_after = {k for k, e in after.items() if e.kind == "file"}
    added = files_after - files_before
    deleted = files_before - files_after
    changed = {k for k in files_before & files_after if before[k].digest != after[k].digest}

    assert len(added) == summary.small_added
    assert len(deleted) == summary.small_deleted
    assert all(p.startswith("small/") for p in added | deleted)
    changed_small = {p for p in changed if p.startswith("small/")}
    changed_logs = {p for p in changed if p.startswith("text/logs/")}
    # An edit may by chance write identical bytes; with random patches it never should.
    assert len(changed_small) == summary.small_edited
    assert len(changed_logs) == summary.text_appended_files
    assert "image/disk.img" in changed
    assert changed <= changed_small | changed_logs | {"image/disk.img"}

    # The image keeps its size and differs in exactly the reported 64 KiB blocks.
    old = (pristine / "image" / "disk.img").read_bytes()
    new = (work / "image" / "disk.img").read_bytes()
    assert len(old) == len(new)
    block = datagen.MUTATE_BLOCK
    differing = sum(
        1 for off in range(0, len(old), block) if old[off : off + block] != new[off : off + block]
    )
    assert differing == summary.image_blocks_rewritten
    assert summary.image_blocks_rewritten == max(1, int(len(old) // block * 0.02))

    for rel in changed_logs:
        grown = (work / rel).read_bytes()
        assert grown.startswith((pristine / rel).read_bytes())
    appended = sum(after[p].size - before[p].size for p in changed_logs)
    assert appended == summary.text_bytes_appended


def test_mutation_is_deterministic(pristine: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    for target in (first, second):
        target.mkdir()
        _copy(pristine, target)
        datagen.mutate(target, seed=3)
    assert _contents(_digest(first)) == _contents(_digest(second))


def test_mutate_refuses_a_folder_that_is_not_a_data_set(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileNotFoundError, match="not a generated data set"):
        datagen.mutate(tmp_path, seed=1)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_command_line_reports_sizes_and_errors(tmp_path: Path) -> None:
    script = Path(datagen.__file__)
    target = tmp_path / "cli"
    ok = subprocess.run(
        [sys.executable, str(script), "generate", str(target), "--scale", str(TINY)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert "image" in ok.stdout and "allocated" in ok.stdout
    bad = subprocess.run(
        [sys.executable, str(script), "mutate", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 1
    assert bad.stderr.startswith("error:")
    assert "Traceback" not in bad.stderr


def test_tree_comparison_catches_a_single_flipped_byte(pristine: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    _copy(pristine, copy)
    assert treehash.compare_trees(_digest(pristine), _digest(copy)).identical
    victim = next(p for p in sorted((copy / "small").rglob("*")) if p.is_file())
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    (copy / "stray.txt").write_text("x")
    result = treehash.compare_trees(_digest(pristine), _digest(copy))
    assert not result.identical
    assert result.changed == [victim.relative_to(copy).as_posix()]
    assert result.extra == ["stray.txt"]
