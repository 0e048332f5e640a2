"""Micro-benchmark of the data path: chunk + hash + compress + encrypt into memory.

Not a test. Feeds about 1 GiB of mixed data (incompressible, compressible, zeros and
repeated blocks, as files of many sizes) through ``RecoveryPointWriter`` into a
``MemoryStore`` and prints MB/s for 1 and 2 worker threads, with and without
encryption. It also checks which primitives (AES-GCM from ``cryptography``, BLAKE3,
zstd) release the GIL.

    .venv/bin/python benchmarks/datapath_micro.py [--size-mib 1024] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import threading
import time
from collections.abc import Callable

import blake3
import zstandard
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tapir.appliance.datapath.repository import Repository
from tapir.appliance.datapath.sink import RecoveryPointWriter
from tapir.appliance.plugin_api.items import Item, ItemKind
from tapir.appliance.plugin_api.testing.memory_store import MemoryStore

MiB = 1024 * 1024
PIECE = MiB  # how a source plugin typically hands data over
_WORDS = (
    b"backup restore chunk tape pool volume snapshot disk file error warning info "
    b"the of and to in is for on with as by at from that this it be are was were "
    b"2024-05-17T10:22:31Z host01 host02 vm-114 /var/lib/postgresql/data GET POST 200 404 "
).split()


def text_like(size: int, rng: random.Random) -> bytes:
    """Log- or text-like data (compresses about 3:1 with zstd, never deduplicated)."""
    out = bytearray()
    while len(out) < size:
        line = b" ".join(rng.choices(_WORDS, k=12))
        out += b"%d %s %08x\n" % (len(out), line, rng.getrandbits(32))
    return bytes(out[:size])


def make_files(total: int, seed: int = 1) -> list[bytes]:
    """Files of log-uniform sizes (1 KiB to 64 MiB) whose contents mix four kinds."""
    rng = random.Random(seed)
    files: list[bytes] = []
    earlier: list[bytes] = []
    produced = 0
    while produced < total:
        size = min(int(2 ** rng.uniform(10, 26)), total - produced)
        pick = rng.random()
        if pick < 0.4:
            data = os.urandom(size)
        elif pick < 0.8:
            data = text_like(size, rng)
        elif pick < 0.9 or not earlier:
            data = bytes(size)
        else:
            data = rng.choice(earlier)[:size]  # a copy of an earlier file: dedup
            size = len(data)
        files.append(data)
        if len(earlier) < 64:
            earlier.append(data)
        produced += size
    return files


def run(files: list[bytes], *, workers: int, encrypted: bool) -> tuple[float, int]:
    """Back up ``files`` once; returns (seconds, sealed bytes added)."""
    store = MemoryStore()
    repo = Repository.initialize(store, master_key=os.urandom(32), encrypted=encrypted)
    start = time.perf_counter()
    sink = RecoveryPointWriter(
        repo, asset={"name": "bench"}, kind="files", level="full", workers=workers
    )
    for index, data in enumerate(files):
        writer = sink.open_file(Item(path=b"f%06d" % index, kind=ItemKind.FILE))
        for offset in range(0, len(data), PIECE):
            writer.write(data[offset : offset + PIECE])
        writer.close()
    manifest = sink.finish()
    return time.perf_counter() - start, manifest.bytes_new


def _spin_while(work: Callable[[], object], seconds: float) -> int:
    """Pure-Python loop iterations done while another thread repeats ``work``."""
    done = threading.Event()

    def loop() -> None:
        while not done.is_set():
            work()

    thread = threading.Thread(target=loop)
    thread.start()
    count, stop = 0, time.perf_counter() + seconds
    while time.perf_counter() < stop:
        count += 1
    done.set()
    thread.join()
    return count


def gil_check(seconds: float = 1.0) -> dict[str, float]:
    """How much a pure-Python thread progresses while another thread runs a primitive.

    Compared with two references measured the same way, so that CPU contention from
    other processes cancels out: SHA-256 (known to release the GIL) and a pure-Python
    loop (holds it). Values near the SHA-256 one mean the primitive releases the GIL.
    """
    buf, nonce = os.urandom(8 * MiB), os.urandom(12)
    aead = AESGCM(os.urandom(32))
    small = list(range(1000))
    cases: dict[str, Callable[[], object]] = {
        "sha256 (releases)": lambda: hashlib.sha256(buf).digest(),
        "python (holds)": lambda: sum(small),
        "aes-gcm": lambda: aead.encrypt(nonce, buf, None),
        "blake3": lambda: blake3.blake3(buf).digest(),
        "zstd:3": lambda: zstandard.ZstdCompressor(level=3).compress(buf),
    }
    return {name: _spin_while(work, seconds) for name, work in cases.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    files = make_files(args.size_mib * MiB)
    total = sum(len(f) for f in files)
    print(f"{len(files)} files, {total / MiB:.0f} MiB, {os.cpu_count()} CPUs")
    for encrypted in (False, True):
        for workers in args.workers:
            seconds, sealed = run(files, workers=workers, encrypted=encrypted)
            mode = "encrypted" if encrypted else "plain    "
            print(
                f"{mode} workers={workers}: {total / MiB / seconds:7.1f} MiB/s "
                f"({seconds:.2f} s, stored {sealed / MiB:.0f} MiB)"
            )
    progress = gil_check()
    reference = progress["sha256 (releases)"]
    print("GIL check (Python loop progress beside each primitive, sha256 = 100%):")
    for name, count in progress.items():
        print(f"  {name:18s} {count / reference:6.0%}")


if __name__ == "__main__":
    main()
