"""SG_IO: request building and result decoding at the header level; sysfs discovery
on a real sysfs-shaped tree; the device path on whatever /dev/sg* nodes exist."""

from __future__ import annotations

import ctypes
import glob
import subprocess
from pathlib import Path

import pytest

from tapir.hardware import cdb
from tapir.hardware.discovery import scan
from tapir.hardware.sense import SenseKey
from tapir.hardware.sg import (
    SG_DXFER_FROM_DEV,
    SG_DXFER_NONE,
    SG_DXFER_TO_DEV,
    SgIoHdr,
    SgRequest,
    SgTransport,
)
from tapir.hardware.transport import Status, TransportError, open_transport

SG_PROBE = r"""
#include <stdio.h>
#include <stddef.h>
#include <scsi/sg.h>
int main(void) {
  printf("%zu %zu %zu %zu %zu %zu %zu\n", sizeof(struct sg_io_hdr),
    offsetof(struct sg_io_hdr, dxferp), offsetof(struct sg_io_hdr, sbp),
    offsetof(struct sg_io_hdr, timeout), offsetof(struct sg_io_hdr, status),
    offsetof(struct sg_io_hdr, sb_len_wr), offsetof(struct sg_io_hdr, resid));
  return 0;
}
"""


def test_header_layout_matches_the_kernel_abi(tmp_path: Path) -> None:
    src = tmp_path / "sg.c"
    src.write_text(SG_PROBE)
    subprocess.run(["gcc", str(src), "-o", str(tmp_path / "sg")], check=True)
    out = subprocess.run([str(tmp_path / "sg")], capture_output=True, text=True, check=True)
    ours = [ctypes.sizeof(SgIoHdr)] + [
        getattr(SgIoHdr, f).offset
        for f in ("dxferp", "sbp", "timeout", "status", "sb_len_wr", "resid")
    ]
    assert ours == [int(x) for x in out.stdout.split()]


def test_requests_set_direction_lengths_and_timeout() -> None:
    r = SgRequest(cdb.test_unit_ready(), None, 0, 5)
    assert r.hdr.dxfer_direction == SG_DXFER_NONE and r.hdr.timeout == 5000
    assert r.hdr.interface_id == ord("S") and r.hdr.cmd_len == 6
    w = SgRequest(cdb.write6(4, False), b"abcd", 0, 60)
    assert (w.hdr.dxfer_direction, w.hdr.dxfer_len) == (SG_DXFER_TO_DEV, 4)
    assert ctypes.string_at(w.hdr.dxferp, 4) == b"abcd"
    rd = SgRequest(cdb.read6(8192, False), None, 8192, 60)
    assert (rd.hdr.dxfer_direction, rd.hdr.dxfer_len) == (SG_DXFER_FROM_DEV, 8192)
    assert ctypes.string_at(rd.hdr.cmdp, 6) == cdb.read6(8192, False)
    with pytest.raises(ValueError):
        SgRequest(b"\x00", None, 0, 1)
    with pytest.raises(ValueError):
        SgRequest(cdb.read6(1, False), b"x", 1, 1)


def test_results_decode_residual_and_sense() -> None:
    rd = SgRequest(cdb.read6(100, False), None, 100, 60)
    ctypes.memmove(rd.buffer, b"y" * 60, 60)
    rd.hdr.resid = 40
    res = rd.result("/dev/sg9")
    assert res.good and res.data == b"y" * 60 and res.residual == 40
    # A short read: CHECK CONDITION with ILI and the residue in the information field.
    rd = SgRequest(cdb.read6(100, False), None, 100, 60)
    sense = bytes.fromhex("f000200000002800000000000000000000000a")
    ctypes.memmove(rd.sense, sense, len(sense))
    rd.hdr.sb_len_wr, rd.hdr.status, rd.hdr.driver_status, rd.hdr.resid = len(sense), 2, 8, 40
    res = rd.result("/dev/sg9")
    assert res.status == Status.CHECK_CONDITION and res.sense is not None
    assert res.sense.ili and res.sense.information == 40 and res.sense.key == SenseKey.NO_SENSE


@pytest.mark.parametrize(("host", "driver", "match"), [(1, 0, "no connect"), (0, 6, "timed out")])
def test_transport_failures_are_errors_not_statuses(host: int, driver: int, match: str) -> None:
    r = SgRequest(cdb.test_unit_ready(), None, 0, 5)
    r.hdr.host_status, r.hdr.driver_status = host, driver
    with pytest.raises(TransportError, match=match):
        r.result("/dev/sg9")


def _fake_sysfs(root: Path) -> None:
    def dev(sg: str, hctl: str, dtype: int, vendor: str, model: str, serial: str, tapes=()):
        real = root / "devices" / hctl
        real.mkdir(parents=True)
        (real / "type").write_text(f"{dtype}\n")
        (real / "vendor").write_text(vendor.ljust(8) + "\n")
        (real / "model").write_text(model.ljust(16) + "\n")
        (real / "rev").write_text("0001\n")
        (real / "vpd_pg80").write_bytes(bytes([dtype, 0x80, 0, len(serial)]) + serial.encode())
        if tapes:
            (real / "scsi_tape").mkdir()
            for t in tapes:
                (real / "scsi_tape" / t).mkdir()
        node = root / "class" / "scsi_generic" / sg
        node.mkdir(parents=True)
        (node / "device").symlink_to(real)

    dev("sg0", "0:0:0:0", 0, "ATA", "DISK", "D1")
    dev("sg10", "2:0:0:1", 1, "IBM", "ULT3580-TD8", "1097000001", tapes=("st0", "nst0"))
    dev("sg2", "2:0:0:0", 8, "IBM", "3573-TL", "00X4U78L2187")


def test_sysfs_discovery_finds_changers_and_drives(tmp_path: Path) -> None:
    _fake_sysfs(tmp_path)
    found = scan(sysfs=tmp_path)
    assert [(d.sg, d.kind) for d in found] == [("/dev/sg2", "changer"), ("/dev/sg10", "tape")]
    drive = found[1]
    assert (drive.vendor, drive.model, drive.serial, drive.hctl) == (
        "IBM",
        "ULT3580-TD8",
        "1097000001",
        "2:0:0:1",
    )
    assert (drive.st, drive.nst) == ("/dev/st0", "/dev/nst0")
    assert found[0].st is None
    assert scan(sysfs=tmp_path / "nothing") == []


def test_device_path_on_this_machine() -> None:
    nodes = sorted(glob.glob("/dev/sg*"))
    for path in nodes:
        try:
            t = SgTransport(path)
        except TransportError:
            continue
        with t:
            res = t.execute(cdb.inquiry(alloc=96), data_in=96, timeout=10)
            assert res.good and len(res.data) >= 36
    with pytest.raises(TransportError, match="cannot open"):
        open_transport("/dev/sg-does-not-exist")
