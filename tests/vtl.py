"""A real virtual tape library for tests: STGT's tgtd emulating a changer and drives.

``start_library(workdir)`` starts ``tgtd`` in the foreground on 127.0.0.1 (a
free port, its own control number ``-C``), creates one changer, two drives,
storage and mail slots and barcoded cartridge files, and returns the library's
description and a ``stop`` function that tears it down and leaves no process
behind. It is a plain module so that any test folder can reuse it.

Element addresses follow no vendor; they are spread apart so that a test that
confuses an address with an operator number fails loudly:
transport 1, drives 256.., mail slots 768.., storage slots 1024...
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

TARGET = "iqn.2026-11.org.example:vtl"
TRANSPORT_ADDRESS = 1
DRIVE_BASE = 256
MAIL_BASE = 768
STORAGE_BASE = 1024
TGT_RUN_DIR = Path("/var/run/tgtd")


class LibraryStartError(RuntimeError):
    """tgtd or tgtadm failed while the library was being built."""


@dataclass(frozen=True)
class Cartridge:
    """A cartridge to create: where it starts (storage slot or mail slot, 1-based)."""

    barcode: str
    slot: int | None = None
    mail_slot: int | None = None
    size_mb: int = 64
    kind: str = "data"  # tgtimg --type: data, clean or worm


def default_cartridges() -> list[Cartridge]:
    """Eight data cartridges, a tiny one for early warning, a cleaner, one in the mail slot."""
    carts = [Cartridge(f"TAP00{i}L8", slot=i) for i in range(1, 9)]
    carts.append(Cartridge("TAP009L8", slot=9, size_mb=1))
    carts.append(Cartridge("CLN001L1", slot=12, size_mb=1, kind="clean"))
    carts.append(Cartridge("TAP010L8", mail_slot=1))
    return carts


@dataclass
class VirtualLibrary:
    """Everything a test needs to address the library and to poke at it."""

    portal: str
    target: str
    control: int
    pid: int
    home: Path
    changer_lun: int
    drive_luns: list[int]
    transport_address: int
    drive_addresses: list[int]
    mail_addresses: list[int]
    storage_addresses: list[int]
    cartridges: list[Cartridge] = field(default_factory=list)

    def url(self, lun: int) -> str:
        """The iscsi:// address of one LUN."""
        return f"iscsi://{self.portal}/{self.target}/{lun}"

    @property
    def changer_url(self) -> str:
        """The changer's iscsi:// address."""
        return self.url(self.changer_lun)

    @property
    def drive_urls(self) -> list[str]:
        """The drives' iscsi:// addresses, drive 0 first."""
        return [self.url(lun) for lun in self.drive_luns]

    def tgtadm(self, *args: str) -> str:
        """Run tgtadm against this library's tgtd; LibraryStartError on failure."""
        return _tgtadm(self.control, *args)

    def set_lun_params(self, lun: int, params: str) -> None:
        """``tgtadm --op update --params`` on one LUN (e.g. ``readonly=1``)."""
        self.tgtadm(
            "--lld",
            "iscsi",
            "--mode",
            "logicalunit",
            "--op",
            "update",
            "--tid",
            "1",
            "--lun",
            str(lun),
            "--params",
            params,
        )

    def media_file(self, barcode: str) -> Path:
        """The file backing a cartridge."""
        return self.home / barcode


def _tgtadm(control: int, *args: str) -> str:
    proc = subprocess.run(
        ["tgtadm", "-C", str(control), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if proc.returncode != 0:
        raise LibraryStartError(
            f"tgtadm {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}"
        )
    return proc.stdout


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _control_in_use(control: int) -> bool:
    return (TGT_RUN_DIR / f"socket.{control}").exists()


def _make_media(home: Path, cart: Cartridge) -> None:
    subprocess.run(
        [
            "tgtimg",
            "--op",
            "new",
            "--device-type",
            "tape",
            f"--barcode={cart.barcode}",
            f"--size={cart.size_mb}",
            f"--type={cart.kind}",
            f"--file={home / cart.barcode}",
            "--thin-provisioning",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )


def _wait_listening(port: int, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LibraryStartError(f"tgtd exited with {proc.returncode} while starting")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise LibraryStartError("tgtd did not start listening in time")


def _start_tgtd(home: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    last: Exception | None = None
    for _ in range(10):
        port = _free_port()
        control = random.randint(10000, 32000)  # tgtd accepts at most 32767
        if _control_in_use(control):
            continue
        log = open(home / "tgtd.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(
                ["tgtd", "-f", "-C", str(control), "--iscsi", f"portal=127.0.0.1:{port}"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()
        try:
            _wait_listening(port, proc, time.monotonic() + 10)
            return proc, port, control
        except LibraryStartError as exc:
            last = exc
            _kill(proc, control)
    raise LibraryStartError(f"could not start tgtd: {last}")


def _kill(proc: subprocess.Popen[bytes], control: int) -> None:
    if proc.poll() is None:
        # tgtd ignores SIGTERM while targets exist; the orderly way out is tgtadm.
        with contextlib.suppress(Exception):
            _tgtadm(control, "--op", "update", "--mode", "sys", "--name", "State", "-v", "offline")
        with contextlib.suppress(Exception):
            _tgtadm(
                control,
                "--lld",
                "iscsi",
                "--op",
                "delete",
                "--mode",
                "target",
                "--tid",
                "1",
                "--force",
            )
        with contextlib.suppress(Exception):
            _tgtadm(control, "--op", "delete", "--mode", "system")
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    for name in (f"socket.{control}", f"socket.{control}.lock"):
        with contextlib.suppress(FileNotFoundError):
            (TGT_RUN_DIR / name).unlink()


def start_library(
    workdir: Path,
    *,
    drives: int = 2,
    slots: int = 12,
    mail_slots: int = 2,
    cartridges: list[Cartridge] | None = None,
) -> tuple[VirtualLibrary, Callable[[], None]]:
    """Start tgtd with a library under ``workdir``; return (description, stop).

    Raises LibraryStartError (tgtd stopped again) when anything fails.
    """
    if shutil.which("tgtd") is None:
        raise LibraryStartError("tgtd is not installed (Debian: apt-get install tgt)")
    carts = default_cartridges() if cartridges is None else cartridges
    for cart in carts:
        if cart.slot is not None and not 1 <= cart.slot <= slots:
            raise LibraryStartError(f"{cart.barcode}: no slot {cart.slot} (1..{slots})")
        if cart.mail_slot is not None and not 1 <= cart.mail_slot <= mail_slots:
            raise LibraryStartError(f"{cart.barcode}: no mail slot {cart.mail_slot}")
    home = Path(workdir)
    home.mkdir(parents=True, exist_ok=True)
    for cart in carts:
        _make_media(home, cart)
    proc, port, control = _start_tgtd(home)
    changer_lun = drives + 1
    lib = VirtualLibrary(
        portal=f"127.0.0.1:{port}",
        target=TARGET,
        control=control,
        pid=proc.pid,
        home=home,
        changer_lun=changer_lun,
        drive_luns=list(range(1, drives + 1)),
        transport_address=TRANSPORT_ADDRESS,
        drive_addresses=[DRIVE_BASE + i for i in range(drives)],
        mail_addresses=[MAIL_BASE + i for i in range(mail_slots)],
        storage_addresses=[STORAGE_BASE + i for i in range(slots)],
        cartridges=list(carts),
    )

    def stop() -> None:
        _kill(proc, control)

    try:
        _build(lib, carts)
    except BaseException:
        stop()
        raise
    return lib, stop


def _build(lib: VirtualLibrary, carts: list[Cartridge]) -> None:
    iscsi = ("--lld", "iscsi")
    lib.tgtadm(*iscsi, "--op", "new", "--mode", "target", "--tid", "1", "-T", lib.target)
    for i, lun in enumerate(lib.drive_luns):
        # tgt needs a backing file even for an empty drive; online=0 makes it report
        # "medium not present" until the changer loads a cartridge.
        empty = lib.home / f".empty-drive{i}"
        _make_media(lib.home, Cartridge(barcode=empty.name, size_mb=1, kind="clean"))
        lib.tgtadm(
            *iscsi,
            "--mode",
            "logicalunit",
            "--op",
            "new",
            "--tid",
            "1",
            "--lun",
            str(lun),
            "-b",
            str(empty),
            "--device-type=tape",
        )
        lib.set_lun_params(
            lun,
            f"online=0,vendor_id=IBM,product_id=ULT3580-TD8,product_rev=T1,scsi_sn=VDRV{i:04d}",
        )
    smc = lib.home / ".smc"
    smc.touch()
    lun = lib.changer_lun
    lib.tgtadm(
        *iscsi,
        "--mode",
        "logicalunit",
        "--op",
        "new",
        "--tid",
        "1",
        "--lun",
        str(lun),
        "-b",
        str(smc),
        "--device-type=changer",
    )
    lib.set_lun_params(
        lun,
        f"vendor_id=TAPIR,product_id=VLIB-14,product_rev=1,scsi_sn=VLIB0001,media_home={lib.home}",
    )
    lib.set_lun_params(lun, f"element_type=1,start_address={lib.transport_address},quantity=1")
    lib.set_lun_params(
        lun, f"element_type=4,start_address={DRIVE_BASE},quantity={len(lib.drive_luns)}"
    )
    for addr, drive_lun in zip(lib.drive_addresses, lib.drive_luns, strict=True):
        lib.set_lun_params(lun, f"element_type=4,address={addr},tid=1,lun={drive_lun}")
    if lib.mail_addresses:
        lib.set_lun_params(
            lun, f"element_type=3,start_address={MAIL_BASE},quantity={len(lib.mail_addresses)}"
        )
    lib.set_lun_params(
        lun, f"element_type=2,start_address={STORAGE_BASE},quantity={len(lib.storage_addresses)}"
    )
    for cart in carts:
        if cart.slot is not None:
            etype, addr = 2, lib.storage_addresses[cart.slot - 1]
        elif cart.mail_slot is not None:
            etype, addr = 3, lib.mail_addresses[cart.mail_slot - 1]
        else:
            continue
        lib.set_lun_params(
            lun, f"element_type={etype},address={addr},barcode={cart.barcode},sides=1"
        )
    lib.tgtadm(*iscsi, "--op", "bind", "--mode", "target", "--tid", "1", "-I", "127.0.0.1")
