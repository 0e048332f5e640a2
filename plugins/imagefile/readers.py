"""Reading an image's guest data by offset: raw files with pread, qcow2 through qemu-nbd.

qcow2 is read through ``qemu-nbd`` (started by libnbd with systemd socket
activation, so no socket path or port is ever exposed) and libnbd's client. QEMU
itself interprets the format, backing chains and compression included, and no
temporary copy of the disk is made.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from types import TracebackType
from typing import Protocol

from tapir.appliance.plugin_api import PluginError
from tapir.appliance.plugin_api.libnbd import load_nbd, pread_all

from .formats import QCOW2, RAW, ImageInfo, open_image
from .qemu import QEMU_UTILS_HINT


class DiskReader(Protocol):
    """Random access to an image's guest data."""

    size: int

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset``; short only at the end of the disk."""

    def close(self) -> None:
        """Release the file or the qemu-nbd server."""


def _clip(offset: int, length: int, size: int) -> int:
    if offset < 0 or length < 0:
        raise ValueError(f"bad read: offset {offset}, length {length}")
    return max(0, min(length, size - offset))


class RawReader:
    """Reads a raw image with ``os.pread`` (thread-safe, no shared file position)."""

    def __init__(self, info: ImageInfo) -> None:
        self.path = info.path
        self.size = info.virtual_size
        self._fd = open_image(info.path)

    def read(self, offset: int, length: int) -> bytes:
        """See :meth:`DiskReader.read`."""
        length = _clip(offset, length, self.size)
        parts: list[bytes] = []
        done = 0
        while done < length:
            try:
                got = os.pread(self._fd, length - done, offset + done)
            except OSError as exc:
                raise PluginError(
                    f"reading {self.path} at byte {offset + done} failed: {exc.strerror}"
                ) from None
            if not got:
                raise PluginError(
                    f"{self.path} ended at byte {offset + done} while being read "
                    f"(it was {self.size} bytes): the image shrank during the backup"
                )
            parts.append(got)
            done += len(got)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        """See :meth:`DiskReader.close`."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class NbdReader:
    """Reads a qcow2 image's guest view through a private, read-only qemu-nbd."""

    def __init__(self, info: ImageInfo) -> None:
        nbd = load_nbd("reading qcow2 images", "python3-libnbd and qemu-utils")
        qemu_nbd = shutil.which("qemu-nbd")
        if qemu_nbd is None:
            raise PluginError(f"reading qcow2 images needs qemu-nbd ({QEMU_UTILS_HINT})")
        self.path = info.path
        self._error = nbd.Error
        self._handle = nbd.NBD()
        try:
            self._handle.connect_systemd_socket_activation(
                [qemu_nbd, "--read-only", "--format=qcow2", str(info.path)]
            )
            self.size = self._handle.get_size()
        except nbd.Error as exc:
            self.close()
            raise PluginError(f"cannot open {info.path} through qemu-nbd: {exc}") from None
        if self.size != info.virtual_size:
            self.close()
            raise PluginError(
                f"{info.path} changed while it was opened (virtual size "
                f"{info.virtual_size} became {self.size})"
            )

    def read(self, offset: int, length: int) -> bytes:
        """See :meth:`DiskReader.read`."""
        length = _clip(offset, length, self.size)
        path = self.path

        def failed(pos: int, exc: Exception) -> Exception:
            return PluginError(f"reading {path} at byte {pos} failed: {exc}")

        return pread_all(self._handle, offset, length, failed)

    def close(self) -> None:
        """See :meth:`DiskReader.close`; libnbd stops qemu-nbd when the handle goes."""
        handle, self._handle = getattr(self, "_handle", None), None
        if handle is None:
            return
        # The server may already be gone; dropping the handle still reaps it.
        with contextlib.suppress(self._error):
            handle.shutdown()
        del handle


class _Opened:
    def __init__(self, reader: RawReader | NbdReader) -> None:
        self.reader = reader

    def __enter__(self) -> RawReader | NbdReader:
        return self.reader

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.reader.close()


def open_reader(info: ImageInfo) -> _Opened:
    """A context manager yielding the reader for ``info``'s format."""
    if info.format == RAW:
        return _Opened(RawReader(info))
    if info.format == QCOW2:
        return _Opened(NbdReader(info))
    raise PluginError(f"{Path(info.path)}: no reader for format {info.format!r}")
