"""Linux SCSI generic transport: the SG_IO ioctl on /dev/sgN."""

from __future__ import annotations

import ctypes
import fcntl
import os
import threading

from .sense import SenseFormatError, decode_sense
from .transport import DEFAULT_TIMEOUT, Result, Status, Transport, TransportError

SG_IO = 0x2285
SG_DXFER_NONE, SG_DXFER_TO_DEV, SG_DXFER_FROM_DEV = -1, -2, -3
SENSE_MAX = 64
_DRIVER_TIMEOUT = 0x06
_HOST_NAMES = {
    1: "no connect",
    2: "bus busy",
    3: "timeout",
    4: "bad target",
    5: "abort",
    7: "error",
    8: "reset",
    11: "soft error",
}


class SgIoHdr(ctypes.Structure):
    """struct sg_io_hdr from <scsi/sg.h>."""

    _fields_ = (
        ("interface_id", ctypes.c_int),
        ("dxfer_direction", ctypes.c_int),
        ("cmd_len", ctypes.c_ubyte),
        ("mx_sb_len", ctypes.c_ubyte),
        ("iovec_count", ctypes.c_ushort),
        ("dxfer_len", ctypes.c_uint),
        ("dxferp", ctypes.c_void_p),
        ("cmdp", ctypes.c_void_p),
        ("sbp", ctypes.c_void_p),
        ("timeout", ctypes.c_uint),
        ("flags", ctypes.c_uint),
        ("pack_id", ctypes.c_int),
        ("usr_ptr", ctypes.c_void_p),
        ("status", ctypes.c_ubyte),
        ("masked_status", ctypes.c_ubyte),
        ("msg_status", ctypes.c_ubyte),
        ("sb_len_wr", ctypes.c_ubyte),
        ("host_status", ctypes.c_ushort),
        ("driver_status", ctypes.c_ushort),
        ("resid", ctypes.c_int),
        ("duration", ctypes.c_uint),
        ("info", ctypes.c_uint),
    )


class SgRequest:
    """One prepared SG_IO request: the header and the buffers it points to."""

    def __init__(
        self,
        cdb: bytes,
        data_out: bytes | bytearray | memoryview | None,
        data_in: int,
        timeout: float,
    ) -> None:
        if not 6 <= len(cdb) <= 16:
            raise ValueError(f"CDB length {len(cdb)} outside 6..16")
        if data_out is not None and data_in:
            raise ValueError("bidirectional commands are not supported")
        self.cdb = ctypes.create_string_buffer(bytes(cdb), len(cdb))
        self.sense = ctypes.create_string_buffer(SENSE_MAX)
        self.data_in = data_in
        hdr = SgIoHdr()
        hdr.interface_id = ord("S")
        hdr.cmd_len = len(cdb)
        hdr.cmdp = ctypes.addressof(self.cdb)
        hdr.mx_sb_len = SENSE_MAX
        hdr.sbp = ctypes.addressof(self.sense)
        hdr.timeout = max(1, int(timeout * 1000)) if timeout else 0xFFFFFFFF
        self.buffer: ctypes.Array[ctypes.c_char] | None = None
        if data_out is not None and len(data_out):
            self.buffer = ctypes.create_string_buffer(bytes(data_out), len(data_out))
            hdr.dxfer_direction = SG_DXFER_TO_DEV
            hdr.dxfer_len = len(data_out)
            hdr.dxferp = ctypes.addressof(self.buffer)
        elif data_in:
            self.buffer = ctypes.create_string_buffer(data_in)
            hdr.dxfer_direction = SG_DXFER_FROM_DEV
            hdr.dxfer_len = data_in
            hdr.dxferp = ctypes.addressof(self.buffer)
        else:
            hdr.dxfer_direction = SG_DXFER_NONE
        self.hdr = hdr

    def result(self, address: str) -> Result:
        """Turn the completed header into a Result (TransportError on host/driver errors)."""
        hdr = self.hdr
        if hdr.host_status:
            name = _HOST_NAMES.get(hdr.host_status, f"host status {hdr.host_status:#x}")
            raise TransportError(f"{address}: {name}")
        if hdr.driver_status & 0x0F == _DRIVER_TIMEOUT:
            raise TransportError(f"{address}: command timed out")
        sense = None
        if hdr.sb_len_wr:
            try:
                sense = decode_sense(self.sense.raw[: hdr.sb_len_wr])
            except SenseFormatError:
                sense = None
        status = hdr.status & 0xFE
        if status == 0 and sense is not None and hdr.driver_status & 0x08:
            status = Status.CHECK_CONDITION
        data = b""
        if self.data_in and self.buffer is not None:
            got = self.data_in - hdr.resid if 0 <= hdr.resid <= self.data_in else self.data_in
            data = self.buffer.raw if status == Status.CHECK_CONDITION else self.buffer.raw[:got]
        try:
            st = Status(status)
        except ValueError as exc:
            raise TransportError(f"{address}: unknown SCSI status {status:#x}") from exc
        return Result(st, data=data, residual=hdr.resid, sense=sense, cdb=self.cdb.raw)


class SgTransport(Transport):
    """A /dev/sgN device (needs read/write access to the node, usually root or group tape)."""

    kind = "sg"

    def __init__(self, path: str) -> None:
        self.address = path
        self._lock = threading.Lock()
        try:
            self._fd: int | None = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        except OSError as exc:
            raise TransportError(f"cannot open {path}: {exc.strerror}") from exc

    def execute(
        self,
        cdb: bytes,
        *,
        data_out: bytes | bytearray | memoryview | None = None,
        data_in: int = 0,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Result:
        """Run one CDB through SG_IO (see Transport.execute)."""
        req = SgRequest(cdb, data_out, data_in, timeout)
        with self._lock:
            if self._fd is None:
                raise TransportError(f"{self.address} is closed")
            try:
                fcntl.ioctl(self._fd, SG_IO, req.hdr)
            except OSError as exc:
                raise TransportError(f"{self.address}: SG_IO failed: {exc.strerror}") from exc
        return req.result(self.address)

    def close(self) -> None:
        """Close the device node (idempotent)."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
