"""Moving VDI bytes over XAPI's HTTP handlers: ``/export_raw_vdi`` and ``/import_raw_vdi``.

Both handlers take the XenAPI session as ``session_id`` and the VDI (reference
or UUID) as ``vdi``, with ``format=raw``. The reader asks for byte ranges with a
``Range`` header; a server that ignores it (XAPI answers 200 and sends the whole
VDI) is read as one stream instead, skipping what is not wanted, so the data is
right either way (only the bytes on the wire differ; see docs/plugins/xenserver.md).
"""

from __future__ import annotations

import http.client
from collections.abc import Callable
from urllib.parse import urlencode

from tapir.appliance.plugin_api import ConnectionFailed, PluginError

from .connection import ConnectionSettings, open_connection

_SKIP = 1 << 20


class VdiReader:
    """Random reads of one VDI (normally a snapshot's) over ``/export_raw_vdi``."""

    def __init__(self, settings: ConnectionSettings, session_ref: str, vdi: str, size: int):
        self.settings = settings
        self.vdi = vdi
        self.size = size
        self.url = "/export_raw_vdi?" + urlencode(
            {"session_id": session_ref, "vdi": vdi, "format": "raw"}
        )
        self._conn: http.client.HTTPConnection | None = None
        #: A whole-VDI stream (server without Range support) and its position.
        self._stream: http.client.HTTPResponse | None = None
        self._stream_pos = 0
        #: Body bytes received from the server, skipped ones included.
        self.bytes_received = 0
        self.ranged: bool | None = None

    def _lost(self, exc: BaseException) -> ConnectionFailed:
        self.close()
        return ConnectionFailed(
            f"lost the connection to {self.settings.address} while reading VDI {self.vdi}: {exc}"
        )

    def _recv(self, resp: http.client.HTTPResponse, length: int) -> bytes:
        parts, left = [], length
        while left:
            block = resp.read(left)
            if not block:
                break
            parts.append(block)
            left -= len(block)
            self.bytes_received += len(block)
        return b"".join(parts)

    def _open(self, headers: dict[str, str]) -> http.client.HTTPResponse:
        if self._conn is None:
            self._conn = open_connection(self.settings)
        self._conn.request("GET", self.url, headers=headers)
        return self._conn.getresponse()

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset`` (fewer only at the end of the VDI)."""
        length = max(0, min(length, self.size - offset))
        if length == 0:
            return b""
        try:
            if self._stream is not None:
                return self._from_stream(offset, length)
            resp = self._open({"Range": f"bytes={offset}-{offset + length - 1}"})
            if resp.status == 206:
                self.ranged = True
                data = self._recv(resp, length)
                if len(data) != length:
                    raise PluginError(
                        f"VDI {self.vdi}: the export ended after {len(data)} of {length} "
                        f"bytes at offset {offset}"
                    )
                return data
            if resp.status == 200:
                self.ranged = False
                self._stream, self._stream_pos = resp, 0
                return self._from_stream(offset, length)
            body = resp.read(2048).decode("utf-8", "replace").strip()
            raise PluginError(
                f"{self.settings.address} refused to export VDI {self.vdi}: "
                f"HTTP {resp.status} {resp.reason} {body}".rstrip()
            )
        except (OSError, http.client.HTTPException) as exc:
            raise self._lost(exc) from None

    def _from_stream(self, offset: int, length: int) -> bytes:
        if offset < self._stream_pos:
            # Backwards: only a new whole-VDI stream can go there.
            self._close_stream()
            resp = self._open({})
            if resp.status != 200:
                raise PluginError(f"VDI {self.vdi}: export answered HTTP {resp.status}")
            self._stream, self._stream_pos = resp, 0
        assert self._stream is not None
        while self._stream_pos < offset:
            skipped = self._recv(self._stream, min(_SKIP, offset - self._stream_pos))
            if not skipped:
                raise PluginError(f"VDI {self.vdi}: the export ended at {self._stream_pos}")
            self._stream_pos += len(skipped)
        data = self._recv(self._stream, length)
        self._stream_pos += len(data)
        if len(data) != length:
            raise PluginError(
                f"VDI {self.vdi}: the export ended after {self._stream_pos} of {self.size} bytes"
            )
        return data

    def _close_stream(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def close(self) -> None:
        """Drop the connection (an unfinished stream cannot be reused)."""
        self._close_stream()
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def import_raw(
    settings: ConnectionSettings,
    session_ref: str,
    vdi: str,
    size: int,
    read: Callable[[int, int], bytes],
    progress: Callable[[int], None] = lambda n: None,
    block: int = 4 << 20,
) -> int:
    """Write ``size`` bytes produced by ``read(offset, length)`` into a VDI; returns bytes sent."""
    url = "/import_raw_vdi?" + urlencode({"session_id": session_ref, "vdi": vdi, "format": "raw"})
    conn = open_connection(settings)
    sent = 0
    try:
        conn.putrequest("PUT", url)
        conn.putheader("Content-Length", str(size))
        conn.putheader("Content-Type", "application/octet-stream")
        conn.endheaders()
        while sent < size:
            data = read(sent, min(block, size - sent))
            if not data:
                raise PluginError(f"the restored image of VDI {vdi} ended after {sent} bytes")
            conn.send(data)
            sent += len(data)
            progress(len(data))
        resp = conn.getresponse()
        body = resp.read(2048).decode("utf-8", "replace").strip()
        if resp.status != 200:
            raise PluginError(
                f"{settings.address} refused the import into VDI {vdi}: "
                f"HTTP {resp.status} {resp.reason} {body}".rstrip()
            )
        return sent
    except (OSError, http.client.HTTPException) as exc:
        raise ConnectionFailed(
            f"lost the connection to {settings.address} while writing VDI {vdi}: {exc}"
        ) from None
    finally:
        conn.close()
