"""Reading a VDI over XenServer's NBD server, the way XenServer's CBT guide exports changed blocks.

``VDI.get_nbd_info`` answers, per host that can serve the VDI, an address, a
port, an export name (``/<VDI uuid>?session_id=<session>``) and the host's TLS
certificate. The client speaks NBD's "fixed newstyle" handshake, upgrades to TLS
with ``NBD_OPT_STARTTLS`` when the pool's network requires it (purpose ``nbd``;
``insecure_nbd`` serves plain NBD), and trusts exactly the certificate XAPI
handed out over the already verified API connection. Then ``NBD_CMD_READ``
fetches exactly the ranges asked for.

This is a small read-only client of the published protocol (NBD's doc/proto.md):
libnbd would do, but its Python bindings exist for Debian's system Python only
and cannot pin a certificate given as PEM text.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import socket
import ssl
import struct
from dataclasses import dataclass
from typing import Any

from tapir.appliance.plugin_api import ConnectionFailed, PluginError

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REPLY_MAGIC = 0x3E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
FLAG_FIXED_NEWSTYLE = 1
FLAG_NO_ZEROES = 2
OPT_STARTTLS = 5
OPT_GO = 7
REP_ACK = 1
REP_INFO = 3
REP_ERR_UNSUP = 2**31 + 1
REP_ERR_TLS_REQD = 2**31 + 5
INFO_EXPORT = 0
CMD_READ = 0
CMD_DISC = 2
#: The largest read one request asks for (servers refuse more than 32 MiB).
MAX_READ = 4 << 20


@dataclass(frozen=True)
class NbdInfo:
    """One entry of ``VDI.get_nbd_info``."""

    address: str
    port: int
    exportname: str
    cert: str  # PEM
    subject: str

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> NbdInfo:
        return cls(
            address=str(rec["address"]),
            port=int(rec["port"]),
            exportname=str(rec["exportname"]),
            cert=str(rec.get("cert", "")),
            subject=str(rec.get("subject", "")),
        )


def _recv(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        block = sock.recv(min(n - len(data), 1 << 20))
        if not block:
            raise ConnectionError(f"the NBD server closed the connection ({len(data)}/{n} bytes)")
        data += block
    return bytes(data)


class NbdReader:
    """An open NBD export of one VDI: ``read(offset, length)`` and ``close()``."""

    def __init__(self, info: NbdInfo, timeout: float) -> None:
        self.info = info
        self.where = f"NBD {info.address}:{info.port}"
        self.bytes_received = 0
        self.ranged = True  # NBD reads exactly what is asked
        self._handle = 0
        try:
            self.sock: socket.socket = socket.create_connection(
                (info.address, info.port), timeout=timeout
            )
            self.size = self._handshake()
        except (OSError, struct.error) as exc:
            self.close()
            raise ConnectionFailed(f"{self.where}: {exc}") from None

    def _option(self, option: int, data: bytes = b"") -> tuple[int, bytes]:
        self.sock.sendall(struct.pack(">QII", IHAVEOPT, option, len(data)) + data)
        magic, _opt, rtype, length = struct.unpack(">QIII", _recv(self.sock, 20))
        if magic != REPLY_MAGIC:
            raise PluginError(f"{self.where}: not an NBD option reply")
        return rtype, _recv(self.sock, length) if length else b""

    def _starttls(self) -> None:
        rtype, _ = self._option(OPT_STARTTLS)
        if rtype != REP_ACK:
            raise PluginError(f"{self.where} refused TLS (reply {rtype:#x})")
        if not self.info.cert:
            raise PluginError(f"{self.where}: XAPI gave no certificate to check the NBD server")
        expected = hashlib.sha256(ssl.PEM_cert_to_DER_cert(self.info.cert)).hexdigest()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        # Trust is the certificate XAPI named over the verified API connection.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        tls = context.wrap_socket(self.sock)
        actual = hashlib.sha256(tls.getpeercert(binary_form=True) or b"").hexdigest()
        if not hmac.compare_digest(actual, expected):
            tls.close()
            raise PluginError(f"{self.where}: the TLS certificate is not the one XAPI named for it")
        self.sock = tls

    def _handshake(self) -> int:
        magic, opt_magic, flags = struct.unpack(">QQH", _recv(self.sock, 18))
        if magic != NBDMAGIC or opt_magic != IHAVEOPT or not flags & FLAG_FIXED_NEWSTYLE:
            raise PluginError(f"{self.where} is not a fixed-newstyle NBD server")
        self.sock.sendall(struct.pack(">I", FLAG_FIXED_NEWSTYLE | (flags & FLAG_NO_ZEROES)))
        name = self.info.exportname.encode()
        go = struct.pack(">I", len(name)) + name + struct.pack(">HH", 1, INFO_EXPORT)
        tls_done = False
        while True:
            rtype, data = self._option(OPT_GO, go)
            if rtype == REP_ERR_TLS_REQD and not tls_done:
                self._starttls()
                tls_done = True
                continue
            size = None
            while rtype == REP_INFO:
                if len(data) >= 12 and struct.unpack(">H", data[:2])[0] == INFO_EXPORT:
                    size = struct.unpack(">Q", data[2:10])[0]
                magic, _opt, rtype, length = struct.unpack(">QIII", _recv(self.sock, 20))
                data = _recv(self.sock, length) if length else b""
            if rtype != REP_ACK or size is None:
                raise PluginError(
                    f"{self.where} refused the export (reply {rtype:#x}; "
                    "an expired session, or a VDI without data)"
                )
            return int(size)

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset`` (fewer only at the end of the export)."""
        length = max(0, min(length, self.size - offset))
        parts = []
        try:
            while length > 0:
                n = min(length, MAX_READ)
                self._handle += 1
                self.sock.sendall(
                    struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_READ, self._handle, offset, n)
                )
                magic, error, handle = struct.unpack(">IIQ", _recv(self.sock, 16))
                if magic != SIMPLE_REPLY_MAGIC or handle != self._handle:
                    raise PluginError(f"{self.where}: unexpected NBD reply")
                if error:
                    raise PluginError(f"{self.where}: read at {offset} failed (error {error})")
                parts.append(_recv(self.sock, n))
                self.bytes_received += n
                offset += n
                length -= n
        except (OSError, struct.error) as exc:
            raise ConnectionFailed(f"lost the connection to {self.where}: {exc}") from None
        return b"".join(parts)

    def close(self) -> None:
        """Say goodbye (``NBD_CMD_DISC``) and close."""
        sock = getattr(self, "sock", None)
        if sock is None:
            return
        with contextlib.suppress(OSError):
            sock.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_DISC, 0, 0, 0))
        sock.close()
