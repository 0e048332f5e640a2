"""The NBD side of the XAPI test server: VDIs as network block devices, as XenServer serves them.

XenServer runs an NBD server (port 10809 on a real host) that uses the "fixed
newstyle" handshake; on a network whose purpose is ``nbd`` it requires TLS
(``NBD_OPT_STARTTLS``) with the host's certificate, which ``VDI.get_nbd_info``
hands out with the export name ``/<VDI uuid>?session_id=<session>``. This server
implements that subset of the NBD protocol (doc/proto.md of the NBD project):
``NBD_OPT_STARTTLS``, ``NBD_OPT_GO`` (with ``NBD_INFO_EXPORT``), ``NBD_OPT_ABORT``,
``NBD_CMD_READ`` and ``NBD_CMD_DISC``, simple replies only, read-only exports.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from pathlib import Path

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REPLY_MAGIC = 0x3E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
FLAG_FIXED_NEWSTYLE = 1
FLAG_NO_ZEROES = 2
OPT_ABORT = 2
OPT_STARTTLS = 5
OPT_GO = 7
REP_ACK = 1
REP_INFO = 3
REP_ERR_UNSUP = 2**31 + 1
REP_ERR_POLICY = 2**31 + 2
REP_ERR_INVALID = 2**31 + 3
REP_ERR_TLS_REQD = 2**31 + 5
REP_ERR_UNKNOWN = 2**31 + 6
INFO_EXPORT = 0
TRANSMIT_HAS_FLAGS = 1
TRANSMIT_READ_ONLY = 2
CMD_READ = 0
CMD_DISC = 2
EINVAL = 22
EIO = 5

#: Resolves an export name to the VDI file, or None when unknown or not allowed.
Resolver = Callable[[str], Path | None]


def _recv(sock: socket.socket | ssl.SSLSocket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        block = sock.recv(n - len(data))
        if not block:
            raise ConnectionError("peer closed")
        data += block
    return bytes(data)


class NbdServer:
    """A threaded NBD server on 127.0.0.1 (a random port)."""

    def __init__(self, resolve: Resolver, tls: ssl.SSLContext | None) -> None:
        self.resolve = resolve
        self.tls = tls  # None: an "insecure_nbd" network (no TLS offered)
        self.bytes_sent = 0
        self.lock = threading.Lock()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._stop = False
        self.thread = threading.Thread(target=self._accept, name="nbd-test", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self._stop = True
        # shutdown() wakes the accept() blocked in the server thread; close() alone does not.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _reply(self, sock: socket.socket, option: int, rtype: int, data: bytes = b"") -> None:
        sock.sendall(struct.pack(">QIII", REPLY_MAGIC, option, rtype, len(data)) + data)

    def _serve(self, sock: socket.socket) -> None:
        try:
            with sock:
                self._session(sock)
        except (ConnectionError, OSError, ssl.SSLError, struct.error):
            return

    def _session(self, sock: socket.socket) -> None:
        sock.sendall(struct.pack(">QQH", NBDMAGIC, IHAVEOPT, FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES))
        (client_flags,) = struct.unpack(">I", _recv(sock, 4))
        if not client_flags & FLAG_FIXED_NEWSTYLE:
            return
        export: Path | None = None
        while export is None:
            magic, option, length = struct.unpack(">QII", _recv(sock, 16))
            if magic != IHAVEOPT:
                return
            data = _recv(sock, length) if length else b""
            if option == OPT_STARTTLS:
                if self.tls is None:
                    self._reply(sock, option, REP_ERR_UNSUP)
                elif isinstance(sock, ssl.SSLSocket):
                    self._reply(sock, option, REP_ERR_INVALID)
                else:
                    self._reply(sock, option, REP_ACK)
                    sock = self.tls.wrap_socket(sock, server_side=True)
            elif option == OPT_GO:
                if self.tls is not None and not isinstance(sock, ssl.SSLSocket):
                    self._reply(sock, option, REP_ERR_TLS_REQD)
                    continue
                (name_len,) = struct.unpack(">I", data[:4])
                name = data[4 : 4 + name_len].decode("utf-8", "replace")
                path = self.resolve(name)
                if path is None:
                    self._reply(sock, option, REP_ERR_UNKNOWN)
                    continue
                size = path.stat().st_size
                flags = TRANSMIT_HAS_FLAGS | TRANSMIT_READ_ONLY
                self._reply(sock, option, REP_INFO, struct.pack(">HQH", INFO_EXPORT, size, flags))
                self._reply(sock, option, REP_ACK)
                export = path
            elif option == OPT_ABORT:
                self._reply(sock, option, REP_ACK)
                return
            else:
                self._reply(sock, option, REP_ERR_UNSUP)
        self._transmit(sock, export)

    def _transmit(self, sock: socket.socket, path: Path) -> None:
        with open(path, "rb") as f:
            size = path.stat().st_size
            while True:
                magic, _flags, cmd, handle, offset, length = struct.unpack(
                    ">IHHQQI", _recv(sock, 28)
                )
                if magic != REQUEST_MAGIC or cmd == CMD_DISC:
                    return
                if cmd != CMD_READ or offset + length > size:
                    sock.sendall(struct.pack(">IIQ", SIMPLE_REPLY_MAGIC, EINVAL, handle))
                    continue
                f.seek(offset)
                data = f.read(length)
                sock.sendall(struct.pack(">IIQ", SIMPLE_REPLY_MAGIC, 0, handle) + data)
                with self.lock:
                    self.bytes_sent += len(data)
