"""Sustained write rate of the drive layer into the tgt test library.

Compares, in the same run and against the same library, a bare loop of WRITE(6)
commands on the transport with the drive layer (TapeDrive.write) and the
streaming writer (StreamingWriter), all writing the same 256 KiB blocks to the
same kind of cartridge. Target: the drive layer keeps >= 90 % of the bare rate.

    .venv/bin/python benchmarks/tape_drive_rate.py [--mib 1024] [--rounds 3]

Needs tgt (Debian: tgt) and libiscsi (libiscsi7); runs as root because tgtd does.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from vtl import Cartridge, start_library

from tapir.hardware import cdb
from tapir.hardware.changer import MediaChanger
from tapir.hardware.drive import TapeDrive
from tapir.hardware.iscsi import IscsiTransport
from tapir.hardware.writer import StreamingWriter

BLOCK = 256 * 1024


def _timed(fn: Callable[[], None], nbytes: int) -> float:
    start = time.perf_counter()
    fn()
    return nbytes / (time.perf_counter() - start) / 1e6


def main() -> None:
    """Run the comparison and print MB/s per method and the ratio to the bare loop."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=1024, help="data written per measurement")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    blocks = args.mib * 1024 * 1024 // BLOCK
    block = os.urandom(BLOCK)
    size_mb = args.mib * 2 + 64
    with tempfile.TemporaryDirectory(prefix="tapir-bench-") as tmp:
        lib, stop = start_library(
            Path(tmp), cartridges=[Cartridge("BENCH1L8", slot=1, size_mb=size_mb)]
        )
        try:
            with MediaChanger.open(lib.changer_url) as ch:
                ch.load(1, 0)
            url = lib.drive_urls[0]
            results: dict[str, list[float]] = {"bare": [], "drive": [], "writer": []}
            with TapeDrive.open(url, block_size=0) as drive:
                drive.wait_ready(timeout=30)
                drive.set_block_size(0)
                raw = IscsiTransport(url)
                command = cdb.write6(BLOCK, fixed=False)

                def bare() -> None:
                    for _ in range(blocks):
                        if not raw.execute(command, data_out=block).good:
                            raise RuntimeError("bare WRITE failed")

                def layer() -> None:
                    for _ in range(blocks):
                        drive.write(block)

                def streaming() -> None:
                    with StreamingWriter(drive, depth=32) as w:
                        for _ in range(blocks):
                            w.write(block)

                for _ in range(args.rounds):
                    for name, fn in (("bare", bare), ("drive", layer), ("writer", streaming)):
                        drive.rewind()
                        results[name].append(_timed(fn, blocks * BLOCK))
                raw.close()
        finally:
            stop()
    base = statistics.median(results["bare"])
    print(f"{args.mib} MiB per run, {args.rounds} rounds, 256 KiB variable blocks, tgt over iSCSI")
    for name, rates in results.items():
        med = statistics.median(rates)
        print(f"  {name:7s} median {med:8.1f} MB/s  ({med / base:6.1%} of bare)  runs {rates}")


if __name__ == "__main__":
    main()
