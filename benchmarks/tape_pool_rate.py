"""Tape pools through the real engine: backup rate and single-file restore time.

(a) A files job (one file of incompressible data) backed up to a tape pool on one
    large tgt cartridge, against the drive layer's bare WRITE(6) loop of the same
    amount into another cartridge of the same library, in the same run; the same
    job into a disk pool shows what the engine itself sustains on this machine.
    Target: the tape backup keeps >= 85 % of the bare WRITE rate.
(b) A cartridge filled with many backups; the time to restore the one file of the
    middle backup (locate, read, verify), against a plain sequential read of every
    block of that cartridge from its start.

    .venv/bin/python benchmarks/tape_pool_rate.py [--mib 256] [--rounds 3]
        [--fill-backups 24] [--fill-mib 16] [--doc docs/benchmarks-tape.md]

Needs tgt (Debian: tgt) and libiscsi (libiscsi7); runs as root because tgtd does.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from docsection import write_section
from vtl import Cartridge, VirtualLibrary, start_library

from tapir.appliance.config import load_settings
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_api import VolumeInfo
from tapir.hardware import cdb
from tapir.hardware.changer import MediaChanger
from tapir.hardware.drive import TapeDrive
from tapir.hardware.errors import EndOfData, FilemarkReached
from tapir.hardware.iscsi import IscsiTransport

BLOCK = 256 * 1024
MIB = 1024 * 1024
#: Slots: the filled cartridge, then per round one fresh cartridge for the backup and
#: one for the bare loop. Fresh cartridges keep tgt's positioning out of the rate (tgt
#: finds the end of data by reading every block header from the start, which costs
#: tgtd CPU in proportion to what the cartridge holds; a real drive locates there
#: from its directory), and both paths write into new cartridge files alike.
FILL_SLOT, FIRST_RATE_SLOT = 1, 2
MAX_ROUNDS = 5  # 1 + 2 * rounds slots of the test library's 12


def _bare_slot(round_no: int) -> int:
    return FIRST_RATE_SLOT + MAX_ROUNDS + round_no


@dataclass
class Results:
    """Everything measured in one run."""

    bare: list[float] = field(default_factory=list)  # MB/s
    tape: list[float] = field(default_factory=list)
    disk: list[float] = field(default_factory=list)
    #: CPU seconds per measurement, by path: (this process, tgtd, wall seconds, bytes).
    cpu: dict[str, list[tuple[float, float, float, int]]] = field(default_factory=dict)
    restore_s: float = 0.0
    restore_bytes: int = 0
    scan_s: float = 0.0
    scan_bytes: int = 0
    filled_bytes: int = 0


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) that process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _self_cpu() -> float:
    times = os.times()
    return times.user + times.system


class CpuMeter:
    """CPU used by this process (every thread) and by tgtd over one measurement.

    The rates alone cannot tell a slow tape path from a machine that has no CPU
    left: tgtd emulates the drive on the same CPUs. Counting CPU seconds gives
    the ceiling the machine allows for a path, whatever else is running.
    """

    def __init__(self, res: Results, path: str, tgtd_pid: int, nbytes: int) -> None:
        self.res, self.path, self.pid, self.nbytes = res, path, tgtd_pid, nbytes

    def __enter__(self) -> CpuMeter:
        self.start = (_self_cpu(), _proc_cpu(self.pid), time.perf_counter())
        return self

    def __exit__(self, *exc: object) -> None:
        own, tgtd, wall = self.start
        sample = (
            _self_cpu() - own,
            _proc_cpu(self.pid) - tgtd,
            time.perf_counter() - wall,
            self.nbytes,
        )
        self.res.cpu.setdefault(self.path, []).append(sample)


def _fresh_data(path: Path, mib: int) -> int:
    """Overwrite ``path`` with new random data (new chunks: nothing deduplicates)."""
    with open(path, "wb") as fh:
        for _ in range(mib):
            fh.write(os.urandom(MIB))
    return mib * MIB


def _bare_write(lib: VirtualLibrary, mib: int, slot: int) -> float:
    """MB/s of a bare WRITE(6) loop of 256 KiB blocks from BOT on the cartridge in ``slot``."""
    block = os.urandom(BLOCK)
    with MediaChanger.open(lib.changer_url) as changer:
        changer.load(slot, 0)
        try:
            with TapeDrive.open(lib.drive_urls[0], block_size=0) as drive:
                drive.wait_ready(timeout=30)
                drive.set_block_size(0)
                drive.rewind()
                raw = IscsiTransport(lib.drive_urls[0])
                command = cdb.write6(BLOCK, fixed=False)
                try:
                    start = time.perf_counter()
                    for _ in range(mib * MIB // BLOCK):
                        if not raw.execute(command, data_out=block).good:
                            raise RuntimeError("bare WRITE failed")
                    elapsed = time.perf_counter() - start
                finally:
                    raw.close()
                drive.rewind()
        finally:
            changer.unload(0)
    return mib * MIB / elapsed / 1e6


def _timed_job(app: Appliance, job: str, nbytes: int) -> float:
    start = time.perf_counter()
    run = app.run_job(job)
    elapsed = time.perf_counter() - start
    if run.state != "succeeded":
        raise RuntimeError(f"backup {job} {run.state}: {run.error}")
    return nbytes / elapsed / 1e6


def _sequential_read(lib: VirtualLibrary) -> tuple[float, int]:
    """Seconds and bytes to read every block of the filled cartridge from BOT to EOD."""
    total = 0
    with MediaChanger.open(lib.changer_url) as changer:
        changer.load(FILL_SLOT, 0)
        try:
            with TapeDrive.open(lib.drive_urls[0], block_size=0) as drive:
                drive.wait_ready(timeout=30)
                drive.set_block_size(0)
                drive.rewind()
                start = time.perf_counter()
                while True:
                    try:
                        total += len(drive.read(BLOCK))
                    except FilemarkReached:
                        continue
                    except EndOfData:
                        break
                elapsed = time.perf_counter() - start
                drive.rewind()
        finally:
            changer.unload(0)
    return elapsed, total


def _digest(path: Path) -> str:
    h = hashlib.blake2b()
    with open(path, "rb") as fh:
        while block := fh.read(MIB):
            h.update(block)
    return h.hexdigest()


def run(args: argparse.Namespace, tmp: Path, vtl_dir: Path) -> Results:
    """Start tgt and an appliance in ``tmp`` and take every measurement."""
    res = Results()
    fill_mb = args.fill_mib * args.fill_backups + 64
    carts = [Cartridge("FILL01L8", slot=FILL_SLOT, size_mb=fill_mb)]
    for n in range(args.rounds):
        carts.append(Cartridge(f"RATE{n:02d}L8", slot=FIRST_RATE_SLOT + n, size_mb=args.mib + 64))
        carts.append(Cartridge(f"BARE{n:02d}L8", slot=_bare_slot(n), size_mb=args.mib + 64))
    lib, stop = start_library(vtl_dir, cartridges=carts)
    app = Appliance.open(load_settings(tmp / "home"))
    try:
        app.initialize()
        app.register_device("lib1", "changer", lib.changer_url)
        app.register_device("lib1-d0", "drive", lib.drive_urls[0], changer="lib1", drive_number=0)
        opts = {"changer": "lib1", "drives": "lib1-d0", "block_size": BLOCK}
        app.create_pool("rate", "tape", options={**opts, "allocation": "always-new"})
        app.create_pool("fill", "tape", options=opts)
        volumes = app.plugin_context("tape").volumes
        assert volumes is not None
        for cart in carts:
            if cart.barcode.startswith("BARE"):
                continue  # the bare loop's cartridges are no pool's
            volumes.save(
                VolumeInfo(
                    label=cart.barcode,
                    pool="fill" if cart.slot == FILL_SLOT else "rate",
                    state="scratch",
                    location=f"slot {cart.slot}",
                )
            )
        src = tmp / "src"
        src.mkdir()
        data = src / "data.bin"
        app.create_job("to-tape", "files", "rate", options={"paths": [str(src)]})
        app.create_job("to-disk", "files", "default", options={"paths": [str(src)]})

        for round_no in range(args.rounds):
            nbytes = args.mib * MIB
            with CpuMeter(res, "bare", lib.pid, nbytes):
                res.bare.append(_bare_write(lib, args.mib, _bare_slot(round_no)))
            _fresh_data(data, args.mib)
            with CpuMeter(res, "tape", lib.pid, nbytes):
                res.tape.append(_timed_job(app, "to-tape", nbytes))
            with CpuMeter(res, "disk", lib.pid, nbytes):
                res.disk.append(_timed_job(app, "to-disk", nbytes))
            print(
                f"  round: bare {res.bare[-1]:.0f} MB/s, tape pool {res.tape[-1]:.0f} MB/s, "
                f"disk pool {res.disk[-1]:.0f} MB/s",
                flush=True,
            )

        app.create_job("fill", "files", "fill", options={"paths": [str(src)]})
        digests = []
        for _ in range(args.fill_backups):
            _fresh_data(data, args.fill_mib)
            digests.append(_digest(data))
            if app.run_job("fill").state != "succeeded":
                raise RuntimeError("a fill backup failed")
        [vol] = volumes.list(pool="fill")
        res.filled_bytes = vol.bytes_used
        points = sorted(app.recovery_points(job="fill"), key=lambda rp: (rp.created_at, rp.id))
        middle = len(points) // 2
        target = tmp / "restored"
        start = time.perf_counter()
        result = app.restore(points[middle].id, target=target)
        res.restore_s = time.perf_counter() - start
        if result.failed:
            raise RuntimeError(f"restore failed: {result.failed}")
        [restored] = list(target.rglob("data.bin"))
        if _digest(restored) != digests[middle]:
            raise RuntimeError("the restored file differs from the one backed up")
        res.restore_bytes = restored.stat().st_size
        res.scan_s, res.scan_bytes = _sequential_read(lib)
    finally:
        app.close()
        stop()
    return res


def _markdown(args: argparse.Namespace, res: Results) -> str:
    bare, tape, disk = (statistics.median(x) for x in (res.bare, res.tape, res.disk))
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    command = (
        f".venv/bin/python benchmarks/tape_pool_rate.py --mib {args.mib} --rounds {args.rounds} "
        f"--fill-backups {args.fill_backups} --fill-mib {args.fill_mib} "
        "--doc docs/benchmarks-tape.md"
    )
    verdict = "met" if tape >= 0.85 * bare else "**missed**"
    lines = [
        "## Tape pool through the engine: backup rate and single-file restore",
        "",
        "Generated by `benchmarks/tape_pool_rate.py`; reproduce with",
        "",
        f"    {command}",
        "",
        f"Run {when} on {os.cpu_count()} CPUs (`{platform.platform()}`), tgt's virtual",
        "library over iSCSI on 127.0.0.1, 256 KiB tape blocks, one drive. tgtd, the engine",
        "and the writer share the CPUs, so absolute rates swing from run to run; compare",
        "within a run.",
        "",
        f"**(a) Backup rate.** A files job of one {args.mib} MiB file of fresh random data",
        "(incompressible, nothing deduplicates) per round, timed from `run_job` to its end",
        "(mount, label, chunking, BLAKE3, zstd, blobs, tape writes, catalog file, unload),",
        "each round on a fresh cartridge (a new media set), against a bare WRITE(6) loop of",
        "the same amount from the start of another fresh cartridge of the library (tgt's",
        "cartridge files in /dev/shm, so that the host disk's writeback is not measured),",
        f"and the same job into the disk pool. Target: tape >= 85 % of bare: {verdict}.",
        "",
        "| path | median MB/s | of bare | rounds (MB/s) |",
        "|---|---:|---:|---|",
    ]
    for name, rates, med in (
        ("bare WRITE(6) loop (the reference)", res.bare, bare),
        ("backup to the tape pool", res.tape, tape),
        ("the same backup to a disk pool (engine alone)", res.disk, disk),
    ):
        shown = ", ".join(f"{r:.0f}" for r in rates)
        lines.append(f"| {name} | {med:.0f} | {med / bare:.0%} | {shown} |")
    lines += _cpu_table(res)
    filled = res.filled_bytes / MIB
    lines += [
        "",
        f"**(b) Restore from the middle of a filled cartridge.** {args.fill_backups} backups",
        f"of a {args.fill_mib} MiB file each on one cartridge ({filled:.0f} MiB written);",
        f"restoring backup {args.fill_backups // 2 + 1} (one file, verified) through the engine",
        "(load the cartridge, locate the tape file, read the chunks, verify, write the file)",
        "against reading every block of the cartridge from its start to end of data.",
        "",
        "| operation | seconds | MiB read |",
        "|---|---:|---:|",
        f"| restore one file from the middle | {res.restore_s:.2f} | "
        f"{res.restore_bytes / MIB:.0f} (restored) |",
        f"| sequential read of the whole cartridge | {res.scan_s:.2f} | "
        f"{res.scan_bytes / MIB:.0f} |",
        "",
        f"The restore took {res.restore_s / res.scan_s:.0%} of the full read's time.",
    ]
    return "\n".join(lines) + "\n"


def _cpu_table(res: Results) -> list[str]:
    """CPU seconds per GiB of each path, and the rate the machine's CPUs allow at that cost."""
    ncpu = os.cpu_count() or 1
    lines = [
        "",
        "CPU used in the same rounds (medians; this process counts every thread of the",
        "engine, tgtd is the emulated library). *Ceiling* = the rate at which the path's",
        f"CPU seconds per byte would use all {ncpu} CPUs; *busy* = the share of the CPUs",
        "the path actually kept busy.",
        "",
        "| path | engine CPU-s/GiB | tgtd CPU-s/GiB | busy | ceiling MB/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for path in ("bare", "tape", "disk"):
        samples = res.cpu.get(path, [])
        if not samples:
            continue
        gib = [s[3] / (1 << 30) for s in samples]
        own = statistics.median(s[0] / g for s, g in zip(samples, gib, strict=True))
        tgtd = statistics.median(s[1] / g for s, g in zip(samples, gib, strict=True))
        busy = statistics.median((s[0] + s[1]) / (s[2] * ncpu) for s in samples)
        ceiling = ncpu * (1 << 30) / (own + tgtd) / 1e6
        lines.append(f"| {path} | {own:.2f} | {tgtd:.2f} | {busy:.0%} | {ceiling:.0f} |")
    return lines


def main() -> None:
    """Measure, print, and with ``--doc`` write the section of the benchmark page."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=256, help="backup size per round (a)")
    ap.add_argument("--rounds", type=int, default=3, choices=range(1, MAX_ROUNDS + 1))
    ap.add_argument("--fill-backups", type=int, default=24, help="backups on the cartridge (b)")
    ap.add_argument("--fill-mib", type=int, default=16, help="size of each of them")
    ap.add_argument("--doc", type=Path, default=None, help="write the results into this page")
    args = ap.parse_args()
    # The emulated cartridges live in memory (/dev/shm) when it has room: otherwise the
    # host's disk writeback of tgt's cartridge files is measured, which a real drive,
    # with its own buffer and medium, does not have.
    shm = Path("/dev/shm")
    room = shutil.disk_usage(shm).free if shm.is_dir() else 0
    need = (args.mib + 64) * MIB * 2 * args.rounds + args.fill_mib * args.fill_backups * MIB * 2
    vtl_parent = str(shm) if room > need else None
    with (
        tempfile.TemporaryDirectory(prefix="tapir-bench-") as tmp,
        tempfile.TemporaryDirectory(prefix="tapir-bench-vtl-", dir=vtl_parent) as vtl,
    ):
        res = run(args, Path(tmp), Path(vtl))
    text = _markdown(args, res)
    print(text)
    if args.doc:
        write_section(args.doc, "tape_pool_rate", text, title="Tape benchmarks")


if __name__ == "__main__":
    main()
