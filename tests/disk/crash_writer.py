"""A backup worker for the crash tests: run as a script, killed with SIGKILL by the test.

Usage: python crash_writer.py POOL STATUS_FILE SEED

It writes sessions of deterministic chunks, commits them, stores a manifest per
session and now and then deletes half of an earlier session's chunks, logging
each step to STATUS_FILE *before* (``commit n``, ``gc n``) and *after*
(``committed n``, ``gced n``) it happens, so the test knows what must be there.
"""

from __future__ import annotations

import random
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import TextIO

from tapir.plugins.disk.store import DiskStore


def session_chunks(seed: int, n: int) -> list[tuple[bytes, bytes]]:
    """The chunks of session ``n`` of a writer started with ``seed``."""
    rnd = random.Random(f"{seed}-{n}")
    return [
        (rnd.randbytes(32), rnd.randbytes(rnd.randint(50, 9000))) for _ in range(rnd.randint(1, 14))
    ]


def manifest_blob(seed: int, n: int) -> bytes:
    """The manifest stored after session ``n`` commits."""
    return f"manifest of session {n} of writer {seed}".encode() * 20


def main(pool: str, status_path: str, seed: int) -> None:
    store = DiskStore(pool, pack_size=16 * 1024, lock_timeout=30)
    # Line buffered: each line is one write(2), in the kernel before the next step starts.
    with open(status_path, "a", buffering=1) as status, ThreadPoolExecutor(3) as threads:
        _loop(store, status, threads, seed)


def _loop(store: DiskStore, status: TextIO, threads: ThreadPoolExecutor, seed: int) -> None:
    rnd = random.Random(seed)

    def log(line: str) -> None:
        status.write(line + "\n")

    log("ready")
    committed: list[int] = []
    n = 0
    while True:
        chunks = session_chunks(seed, n)
        log(f"begin {n}")
        session = store.begin()
        list(threads.map(lambda c, s=session: s.put_chunk(*c), chunks))
        log(f"commit {n}")
        session.commit()
        log(f"committed {n}")
        store.put_manifest(f"w{seed}-s{n}", manifest_blob(seed, n))
        log(f"manifest {n}")
        committed.append(n)
        if n % 3 == 2:
            victim = committed.pop(rnd.randrange(len(committed)))
            log(f"gc {victim}")
            store.delete_chunks([cid for cid, _ in session_chunks(seed, victim)[::2]])
            log(f"gced {victim}")
        n += 1


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
