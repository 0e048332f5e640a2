"""Crash safety with real processes: a writer killed with SIGKILL at random moments."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tapir.plugins.disk.layout import create_layout
from tapir.plugins.disk.store import DiskStore

from .crash_writer import manifest_blob, session_chunks
from .helpers import chunk, pool_info

WRITER = Path(__file__).with_name("crash_writer.py")


def _run_and_kill(pool: Path, status: Path, seed: int, delay: float) -> None:
    child = subprocess.Popen([sys.executable, str(WRITER), str(pool), str(status), str(seed)])
    try:
        deadline = time.monotonic() + 30
        while not (status.exists() and "ready\n" in status.read_text()):
            assert child.poll() is None, f"writer exited early with {child.returncode}"
            assert time.monotonic() < deadline, "writer did not start"
            time.sleep(0.01)
        time.sleep(delay)
        assert child.poll() is None, f"writer exited early with {child.returncode}"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()


def _events(status: Path) -> dict[str, set[int]]:
    events: dict[str, set[int]] = {}
    text = status.read_text()
    for line in text[: text.rfind("\n") + 1].splitlines():  # a torn last line is ignored
        word, _, number = line.partition(" ")
        if number:
            events.setdefault(word, set()).add(int(number))
    return events


def _check_writer(store: DiskStore, seed: int, status: Path) -> tuple[set[bytes], int]:
    """What one killed writer did is there, whole; returns its chunk ids and commits."""
    ev = _events(status)
    committed, in_doubt = (
        ev.get("committed", set()),
        ev.get("commit", set()) - ev.get("committed", set()),
    )
    gced, gc_in_doubt = ev.get("gced", set()), ev.get("gc", set()) - ev.get("gced", set())
    known: set[bytes] = set()
    for n in ev.get("begin", set()):
        chunks = session_chunks(seed, n)
        known |= {cid for cid, _ in chunks}
        if n in committed:
            for i, (cid, blob) in enumerate(chunks):
                deleted = i % 2 == 0 and n in gced
                maybe_deleted = i % 2 == 0 and n in gc_in_doubt
                if deleted:
                    assert not store.has_chunk(cid), f"session {n}: deleted chunk {i} is back"
                elif maybe_deleted and not store.has_chunk(cid):
                    continue
                else:
                    assert store.get_chunk(cid) == blob, f"session {n}: chunk {i} damaged"
        elif n in in_doubt:
            # A commit cut short is all or nothing, and what is there is whole.
            visible = [store.has_chunk(cid) for cid, _ in chunks]
            assert all(visible) or not any(visible), f"session {n}: half committed"
            if all(visible):
                assert all(store.get_chunk(cid) == blob for cid, blob in chunks)
        else:
            assert not any(store.has_chunk(cid) for cid, _ in chunks), f"session {n} leaked"
    for n in ev.get("manifest", set()):
        assert store.get_manifest(f"w{seed}-s{n}") == manifest_blob(seed, n)
    return known, len(committed)


def _check_pool(store: DiskStore, seed: int) -> None:
    """The pool as a whole: no strays, index equals a rebuild, a new session works."""
    pool = store.path
    assert store.temporary_files() == []
    index = store.index_records()
    packs = {p.name for p in (pool / "packs").rglob("*.pack")}
    assert packs == {store.layout.pack_path(r.pack_id).name for r in index}, "stray packs"
    store.rebuild_index()
    assert store.index_records() == index

    session = store.begin()
    cid, blob = chunk(f"after-crash-{seed}")
    session.put_chunk(cid, blob)
    session.commit()
    assert DiskStore(pool).get_chunk(cid) == blob
    store.delete_chunks([cid])


def _kill_loop(tmp_path: Path, iterations: int, master_seed: int) -> None:
    pool = tmp_path / "pool"
    create_layout(pool, pool_info(pool))
    rnd = random.Random(master_seed)
    committed = 0
    for i in range(iterations):
        seed = master_seed * 1000 + i
        _run_and_kill(pool, tmp_path / f"status-{i}", seed, rnd.uniform(0.05, 0.8))
        store = DiskStore(pool, pack_size=16 * 1024)  # the clean-up runs here
        known: set[bytes] = set()
        # Earlier writers' chunks must survive later crashes and collections too.
        for j in range(i + 1):
            ids, commits = _check_writer(store, master_seed * 1000 + j, tmp_path / f"status-{j}")
            known |= ids
            committed += commits if j == i else 0
        assert set(store.chunk_ids()) <= known, "chunks nobody wrote"
        _check_pool(store, seed)
    assert committed > 0, "the writer never got to commit: the test proved nothing"
    assert not os.listdir(pool / "tmp")


def test_kill_writer_a_few_times(tmp_path: Path) -> None:
    _kill_loop(tmp_path, iterations=3, master_seed=7)


@pytest.mark.slow
def test_kill_writer_many_times(tmp_path: Path) -> None:
    _kill_loop(tmp_path, iterations=25, master_seed=11)
