"""Read-ahead hints for the files of a folder just listed: bounded, harmless, only a hint."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tapir.plugins.files.prefetch import ListingPrefetcher, hint_file
from tapir.plugins.files.selection import Selection
from tapir.plugins.files.walker import Walker


def listing(folder: Path) -> list[tuple[bytes, os.stat_result]]:
    return [(os.fsencode(p.name), p.lstat()) for p in sorted(folder.iterdir())]


def wait_for(condition, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def test_the_regular_files_of_a_listed_folder_are_hinted(tree: Path) -> None:
    folder = tree / "d0" / "s0"
    expected = sum(1 for p in folder.iterdir() if p.is_file() and p.stat().st_size > 0)
    with ListingPrefetcher() as prefetcher:
        prefetcher.folder_listed(os.fsencode(folder), listing(folder))
        assert wait_for(lambda: prefetcher.hinted == expected)


def test_folders_links_and_empty_files_are_not_hinted(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "data").write_bytes(b"x" * 100)
    os.symlink(tmp_path / "data", tmp_path / "link")
    with ListingPrefetcher() as prefetcher:
        prefetcher.folder_listed(os.fsencode(tmp_path), listing(tmp_path))
        assert wait_for(lambda: prefetcher.hinted == 1)
        time.sleep(0.05)
        assert prefetcher.hinted == 1


def test_pending_lists_are_bounded(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    prefetcher = ListingPrefetcher(max_pending=2)
    prefetcher._stop = True  # a stalled thread: nothing is taken off the queue
    prefetcher._wake.set()
    prefetcher._thread.join()
    for _ in range(50):
        prefetcher.folder_listed(os.fsencode(tmp_path), listing(tmp_path))
    assert len(prefetcher._jobs) == 2
    prefetcher.close()


def test_hints_for_missing_or_special_entries_are_ignored(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert hint_file(os.fsencode(tmp_path / "gone"), 100) is False
    assert hint_file(os.fsencode(fifo), 100) in (True, False)  # O_NONBLOCK: never hangs
    (tmp_path / "f").write_bytes(b"data")
    stale = listing(tmp_path)
    (tmp_path / "f").unlink()  # vanished between the listing and the hint
    with ListingPrefetcher() as prefetcher:
        prefetcher.folder_listed(os.fsencode(tmp_path), stale)
        time.sleep(0.1)
        assert prefetcher.hinted == 0


def test_the_walk_reports_each_listing_once_in_walk_order(tree: Path) -> None:
    seen: list[bytes] = []
    walker = Walker(
        (os.fsencode(tree),),
        Selection(),
        lambda path, message: None,
        on_listing=lambda folder, entries: seen.append(folder),
    )
    folders = [e.abs_path for e in walker if e.st.st_mode & 0o170000 == 0o040000]
    assert seen == folders[-len(seen) :]  # every walked folder below the root, in order
    assert len(seen) == len([p for p in tree.rglob("*") if p.is_dir()]) + 1


def test_close_stops_the_thread() -> None:
    prefetcher = ListingPrefetcher()
    prefetcher.close()
    assert not prefetcher._thread.is_alive()
    with pytest.raises(RuntimeError):
        prefetcher._thread.start()  # a stopped thread cannot be restarted
