"""SCSI over iSCSI through libiscsi's synchronous API (bound with ctypes).

The PyPI bindings for libiscsi drop the raw sense bytes and the residual, both of
which a tape layer needs, so the few C functions used here are bound directly.
Only the leading fields of ``struct scsi_task`` are read; their offsets are
checked against the installed header by the test suite.

Address form: ``iscsi://[user%password@]host[:port]/target-iqn/lun``.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import socket
import threading
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from .sense import SenseFormatError, decode_sense
from .transport import DEFAULT_TIMEOUT, Result, Status, Transport, TransportError

INITIATOR_NAME = f"iqn.2026-11.org.tapir:{socket.gethostname() or 'initiator'}"

_XFER_NONE, _XFER_READ, _XFER_WRITE = 0, 1, 2
_SESSION_NORMAL = 2
_HEADER_DIGEST_NONE_CRC32C = 1
_RESIDUAL_UNDERFLOW, _RESIDUAL_OVERFLOW = 1, 2
_STATUS_ERROR = 0x0F000001  # libiscsi's own "transport failed" pseudo status
_STATUS_CANCELLED = 0x0F000002


class _ScsiTaskHead(ctypes.Structure):
    # Leading part of libiscsi's struct scsi_task (scsi-lowlevel.h, soname 7).
    _fields_ = (
        ("status", ctypes.c_int),
        ("cdb_size", ctypes.c_int),
        ("xfer_dir", ctypes.c_int),
        ("expxferlen", ctypes.c_int),
        ("cdb", ctypes.c_ubyte * 16),
        ("residual_status", ctypes.c_int),
        ("residual", ctypes.c_size_t),
        ("sense", ctypes.c_ubyte * 16),
        ("datain_size", ctypes.c_int),
        ("datain_data", ctypes.POINTER(ctypes.c_ubyte)),
    )


class _IscsiData(ctypes.Structure):
    _fields_ = (("size", ctypes.c_size_t), ("data", ctypes.c_void_p))


class _ScsiIovec(ctypes.Structure):
    _fields_ = (("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t))


_lib: ctypes.CDLL | None = None
_lib_lock = threading.Lock()


def libiscsi() -> ctypes.CDLL:
    """Load libiscsi once and declare the signatures used; TransportError if absent."""
    global _lib
    with _lib_lock:
        if _lib is not None:
            return _lib
        name = ctypes.util.find_library("iscsi") or "libiscsi.so.7"
        try:
            lib = ctypes.CDLL(name)
        except OSError as exc:
            raise TransportError(
                "libiscsi is not installed (Debian: apt-get install libiscsi7)"
            ) from exc
        vp, cp, ci = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
        task_p = ctypes.POINTER(_ScsiTaskHead)
        for fname, restype, argtypes in (
            ("iscsi_create_context", vp, (cp,)),
            ("iscsi_destroy_context", ci, (vp,)),
            ("iscsi_set_targetname", ci, (vp, cp)),
            ("iscsi_set_session_type", ci, (vp, ci)),
            ("iscsi_set_header_digest", ci, (vp, ci)),
            ("iscsi_set_initiator_username_pwd", ci, (vp, cp, cp)),
            ("iscsi_set_timeout", ci, (vp, ci)),
            ("iscsi_set_noautoreconnect", None, (vp, ci)),
            ("iscsi_full_connect_sync", ci, (vp, cp, ci)),
            ("iscsi_logout_sync", ci, (vp,)),
            ("iscsi_disconnect", ci, (vp,)),
            ("iscsi_get_error", cp, (vp,)),
            ("scsi_create_task", task_p, (ci, ctypes.c_char_p, ci, ci)),
            ("scsi_free_scsi_task", None, (task_p,)),
            ("scsi_task_set_iov_in", None, (task_p, ctypes.POINTER(_ScsiIovec), ci)),
            (
                "iscsi_scsi_command_sync",
                task_p,
                (vp, ci, task_p, ctypes.POINTER(_IscsiData)),
            ),
        ):
            fn = getattr(lib, fname)
            fn.restype = restype
            fn.argtypes = argtypes
        _lib = lib
        return lib


@dataclass(frozen=True)
class IscsiAddress:
    """A parsed ``iscsi://`` device address."""

    portal: str
    target: str
    lun: int
    user: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> IscsiAddress:
        """Parse ``iscsi://[user%password@]host[:port]/target/lun``; ValueError when malformed."""
        parts = urlsplit(url)
        if parts.scheme != "iscsi" or not parts.hostname:
            raise ValueError(f"not an iscsi:// URL: {url!r}")
        pieces = [p for p in parts.path.split("/") if p]
        if len(pieces) != 2 or not pieces[1].isdigit():
            raise ValueError(f"iSCSI URL needs /target-iqn/lun after the host: {url!r}")
        host = parts.hostname
        if ":" in host:
            host = f"[{host}]"
        user = password = None
        if parts.username:
            user, _, password = unquote(parts.username).partition("%")
        return cls(
            portal=f"{host}:{parts.port or 3260}",
            target=unquote(pieces[0]),
            lun=int(pieces[1]),
            user=user,
            password=password or None,
        )

    def __str__(self) -> str:
        return f"iscsi://{self.portal}/{self.target}/{self.lun}"


class IscsiTransport(Transport):
    """One logged-in iSCSI session to one LUN; commands are serialised per session."""

    kind = "iscsi"

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.url = IscsiAddress.parse(url)
        self.address = str(self.url)
        self._lib = libiscsi()
        self._lock = threading.Lock()
        self._timeout = 0
        ctx = self._lib.iscsi_create_context(INITIATOR_NAME.encode())
        if not ctx:
            raise TransportError("libiscsi could not create a context")
        self._ctx: int | None = ctx
        try:
            self._lib.iscsi_set_targetname(ctx, self.url.target.encode())
            self._lib.iscsi_set_session_type(ctx, _SESSION_NORMAL)
            self._lib.iscsi_set_header_digest(ctx, _HEADER_DIGEST_NONE_CRC32C)
            # A silent reconnect would hide a lost I_T nexus (and with it the tape
            # position) from the caller, and spins forever on a target that is gone.
            self._lib.iscsi_set_noautoreconnect(ctx, 1)
            if self.url.user:
                self._lib.iscsi_set_initiator_username_pwd(
                    ctx, self.url.user.encode(), (self.url.password or "").encode()
                )
            self._set_timeout(timeout)
            if self._lib.iscsi_full_connect_sync(ctx, self.url.portal.encode(), self.url.lun):
                raise TransportError(f"cannot log in to {self.address}: {self._error()}")
        except BaseException:
            self._lib.iscsi_destroy_context(ctx)
            self._ctx = None
            raise

    def _error(self) -> str:
        msg = self._lib.iscsi_get_error(self._ctx) if self._ctx else None
        return msg.decode(errors="replace") if msg else "unknown libiscsi error"

    def _set_timeout(self, timeout: float) -> None:
        seconds = max(1, int(timeout + 0.999)) if timeout else 0
        if seconds != self._timeout:
            self._lib.iscsi_set_timeout(self._ctx, seconds)
            self._timeout = seconds

    def execute(
        self,
        cdb: bytes,
        *,
        data_out: bytes | bytearray | memoryview | None = None,
        data_in: int = 0,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Result:
        """Run one CDB over the session (see Transport.execute)."""
        cdb = bytes(cdb)
        if not 6 <= len(cdb) <= 16:
            raise ValueError(f"CDB length {len(cdb)} outside 6..16")
        if data_out is not None and data_in:
            raise ValueError("bidirectional commands are not supported")
        out_len = len(data_out) if data_out is not None else 0
        if out_len:
            direction, xfer = _XFER_WRITE, out_len
        elif data_in:
            direction, xfer = _XFER_READ, data_in
        else:
            direction, xfer = _XFER_NONE, 0

        with self._lock:
            if self._ctx is None:
                raise TransportError(f"{self.address} is closed")
            lib = self._lib
            task = lib.scsi_create_task(len(cdb), cdb, direction, xfer)
            if not task:
                raise TransportError("libiscsi could not allocate a task")
            keep: list[object] = []
            try:
                out_p = None
                if out_len:
                    out_p = ctypes.pointer(_IscsiData(out_len, _address_of(data_out, keep)))
                in_buf = None
                if data_in:
                    # Data lands in our buffer even when the command ends in
                    # CHECK CONDITION (short reads, filemarks), which libiscsi's
                    # own buffer would drop in favour of the sense bytes.
                    in_buf = ctypes.create_string_buffer(data_in)
                    iov = _ScsiIovec(ctypes.addressof(in_buf), data_in)
                    keep.append(iov)
                    lib.scsi_task_set_iov_in(task, ctypes.byref(iov), 1)
                self._set_timeout(timeout)
                done = lib.iscsi_scsi_command_sync(self._ctx, self.url.lun, task, out_p)
                if not done:
                    raise TransportError(f"{self.address}: {self._error()}")
                head = done.contents
                return self._result(cdb, head, in_buf, data_in)
            finally:
                lib.scsi_free_scsi_task(task)

    def _result(
        self,
        cdb: bytes,
        head: _ScsiTaskHead,
        in_buf: ctypes.Array[ctypes.c_char] | None,
        data_in: int,
    ) -> Result:
        status = head.status
        if status in (_STATUS_ERROR, _STATUS_CANCELLED) or status < 0:
            raise TransportError(f"{self.address}: {self._error()}")
        residual = 0
        if head.residual_status == _RESIDUAL_UNDERFLOW:
            residual = int(head.residual)
        elif head.residual_status == _RESIDUAL_OVERFLOW:
            residual = -int(head.residual)
        sense = None
        if status == Status.CHECK_CONDITION and head.datain_size > 2:
            # libiscsi keeps the iSCSI sense segment: a 2-byte length, then the sense.
            seg = ctypes.string_at(head.datain_data, head.datain_size)
            length = int.from_bytes(seg[:2], "big")
            try:
                sense = decode_sense(seg[2 : 2 + length])
            except SenseFormatError:
                sense = None
        data = b""
        buffer = None
        if in_buf is not None:
            if status == Status.CHECK_CONDITION:
                # The residual is unreliable here (tgt reports the transferred
                # count); the command set's sense INFORMATION field says what is valid.
                data = in_buf.raw
            else:
                got = data_in - residual if 0 < residual <= data_in else data_in
                data = in_buf.raw[:got]
                if got < data_in:
                    buffer = in_buf.raw
        try:
            st = Status(status)
        except ValueError as exc:
            raise TransportError(f"{self.address}: unknown SCSI status {status:#x}") from exc
        return Result(status=st, data=data, residual=residual, sense=sense, cdb=cdb, buffer=buffer)

    def close(self) -> None:
        """Log out and free the session (idempotent)."""
        with self._lock:
            if self._ctx is None:
                return
            ctx, self._ctx = self._ctx, None
            self._lib.iscsi_logout_sync(ctx)
            self._lib.iscsi_disconnect(ctx)
            self._lib.iscsi_destroy_context(ctx)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


def _address_of(buf: bytes | bytearray | memoryview, keep: list[object]) -> int:
    """The address of ``buf``'s bytes without copying when the buffer allows it."""
    if isinstance(buf, bytes):
        p = ctypes.c_char_p(buf)
        keep.append(p)
        return ctypes.cast(p, ctypes.c_void_p).value or 0
    mv = memoryview(buf)
    if mv.readonly or not mv.contiguous:
        copy = ctypes.create_string_buffer(mv.tobytes(), mv.nbytes)
        keep.append(copy)
        return ctypes.addressof(copy)
    arr = (ctypes.c_char * mv.nbytes).from_buffer(mv.cast("B"))
    keep.append(arr)
    return ctypes.addressof(arr)
