"""The libiscsi transport against a real tgt target."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest
from vtl import VirtualLibrary

from tapir.hardware import cdb
from tapir.hardware.iscsi import IscsiAddress, IscsiTransport, _ScsiTaskHead
from tapir.hardware.sense import SenseKey
from tapir.hardware.transport import Status, TransportError, open_transport

HEADER_PROBE = r"""
#include <stdio.h>
#include <stddef.h>
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
int main(void) {
  printf("%zu %zu %zu %zu %zu %zu\n",
    offsetof(struct scsi_task, status), offsetof(struct scsi_task, cdb),
    offsetof(struct scsi_task, residual_status), offsetof(struct scsi_task, residual),
    offsetof(struct scsi_task, sense), offsetof(struct scsi_task, datain));
  return 0;
}
"""


def test_ctypes_layout_matches_the_installed_header(tmp_path: Path) -> None:
    assert shutil.which("gcc"), "gcc is needed to check the libiscsi struct layout"
    src = tmp_path / "probe.c"
    src.write_text(HEADER_PROBE)
    subprocess.run(["gcc", str(src), "-o", str(tmp_path / "probe")], check=True)
    out = subprocess.run([str(tmp_path / "probe")], capture_output=True, text=True, check=True)
    expected = [int(x) for x in out.stdout.split()]
    ours = [
        getattr(_ScsiTaskHead, f).offset
        for f in ("status", "cdb", "residual_status", "residual", "sense", "datain_size")
    ]
    assert ours == expected
    assert ctypes.sizeof(ctypes.c_size_t) == 8


@pytest.mark.parametrize(
    "url",
    [
        "iscsi://127.0.0.1/iqn.x",
        "iscsi://127.0.0.1/iqn.x/lun",
        "iscsi:///iqn.x/1",
        "http://127.0.0.1/iqn.x/1",
    ],
)
def test_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        IscsiAddress.parse(url)


def test_url_parsing_with_port_and_credentials() -> None:
    a = IscsiAddress.parse("iscsi://bob%s3cret@127.0.0.1:3261/iqn.2026-11.org.example:vtl/3")
    assert (a.portal, a.target, a.lun, a.user, a.password) == (
        "127.0.0.1:3261",
        "iqn.2026-11.org.example:vtl",
        3,
        "bob",
        "s3cret",
    )
    assert IscsiAddress.parse("iscsi://127.0.0.1/t/0").portal == "127.0.0.1:3260"


def test_unknown_device_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown device"):
        open_transport("changer0")


def test_inquiry_and_check_condition_with_sense(vtl: VirtualLibrary) -> None:
    with IscsiTransport(vtl.drive_urls[0]) as t:
        res = t.execute(cdb.inquiry(alloc=96), data_in=96)
        assert res.good and res.data[0] & 0x1F == 0x01
        assert res.data[8:16].strip() == b"IBM"
        assert res.residual == 96 - len(res.data)
        # An empty drive: NOT READY, medium not present.
        res = t.execute(cdb.test_unit_ready())
        assert res.status == Status.CHECK_CONDITION
        assert res.sense is not None and res.sense.key == SenseKey.NOT_READY
        assert res.sense.asc == 0x3A


def test_unreachable_target_gives_transport_error(vtl: VirtualLibrary) -> None:
    with pytest.raises(TransportError):
        IscsiTransport(f"iscsi://{vtl.portal}/iqn.2026-11.org.example:nosuch/1")


def test_closed_transport_refuses_commands_and_stopped_target_fails_cleanly(
    tmp_path: Path,
) -> None:
    from vtl import start_library

    lib, stop = start_library(tmp_path / "v")
    try:
        t = IscsiTransport(lib.changer_url)
        assert t.execute(cdb.test_unit_ready()).good
    finally:
        stop()
    with pytest.raises(TransportError):
        t.execute(cdb.test_unit_ready(), timeout=5)
    t.close()
    with pytest.raises(TransportError, match="closed"):
        t.execute(cdb.test_unit_ready())


def test_bad_cdb_lengths(vtl: VirtualLibrary) -> None:
    with IscsiTransport(vtl.changer_url) as t, pytest.raises(ValueError):
        t.execute(b"\x00\x00")
