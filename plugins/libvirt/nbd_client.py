"""Reading a backup job's NBD export with libnbd: extents by meta context, data by offset.

libnbd's Python bindings come from the plugin API's loader
(:func:`tapir.appliance.plugin_api.libnbd.load_nbd`): Debian ships them for the
system Python only.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from tapir.appliance.plugin_api import Extent, PluginError
from tapir.appliance.plugin_api.libnbd import load_nbd, pread_all

ALLOCATION = "base:allocation"
#: base:allocation flag: the area reads as zeros (a hole or zeroed clusters).
STATE_ZERO = 2
#: qemu:dirty-bitmap flag: the area changed since the checkpoint.
STATE_DIRTY = 1
#: Block status is asked in windows of this size (servers cap one answer anyway).
STATUS_WINDOW = 1024 * 1024 * 1024


def dirty_bitmap_context(target: str) -> str:
    """The meta context libvirt names for an incremental export of disk ``target``."""
    return f"qemu:dirty-bitmap:backup-{target}"


def merge(extents: list[Extent]) -> list[Extent]:
    """Adjacent extents joined (block status answers in small pieces)."""
    merged: list[Extent] = []
    for ext in extents:
        if ext.length <= 0:
            continue
        if merged and merged[-1].end == ext.offset:
            merged[-1] = Extent(merged[-1].offset, merged[-1].length + ext.length)
        else:
            merged.append(ext)
    return merged


class NbdExport:
    """One disk of a pull-mode backup job, as an NBD client sees it."""

    def __init__(
        self,
        export: str,
        contexts: list[str],
        *,
        socket: Path | None = None,
        host: str | None = None,
        port: int | None = None,
        command: list[str] | None = None,
    ) -> None:
        nbd = load_nbd("reading libvirt backups", "python3-libnbd")
        self.export = export
        self._error = nbd.Error
        self._handle = nbd.NBD()
        where = str(socket) if socket is not None else f"{host}:{port}"
        try:
            self._handle.set_export_name(export)
            for context in contexts:
                self._handle.add_meta_context(context)
            if command is not None:
                # A private qemu-nbd on a socket libnbd passes it (systemd socket activation).
                where = command[-1]
                self._handle.connect_systemd_socket_activation(command)
            elif socket is not None:
                self._handle.connect_unix(str(socket))
            else:
                self._handle.connect_tcp(str(host), str(port))
            self.size = int(self._handle.get_size())
        except nbd.Error as exc:
            self.close()
            raise PluginError(f"cannot open the NBD export {export!r} at {where}: {exc}") from None
        missing = [c for c in contexts if not self._handle.can_meta_context(c)]
        if missing:
            self.close()
            raise PluginError(f"the NBD export {export!r} does not offer {missing}")

    def extents(self, context: str, wanted: int, *, invert: bool = False) -> list[Extent]:
        """Areas whose ``context`` flags contain ``wanted`` (with ``invert``: lack it)."""
        found: list[Extent] = []
        answers: list[tuple[int, list[int]]] = []

        def collect(meta: str, start: int, entries: list[int], _err: object) -> int:
            if meta == context:
                answers.append((start, list(entries)))
            return 0

        offset = 0
        while offset < self.size:
            answers.clear()

            window = min(STATUS_WINDOW, self.size - offset)
            try:
                self._handle.block_status(window, offset, collect)
            except self._error as exc:
                raise PluginError(
                    f"asking the NBD export {self.export!r} for {context} at byte {offset} "
                    f"failed: {exc}"
                ) from None
            advanced = offset
            for start, entries in answers:
                pos = start
                for length, flags in zip(entries[0::2], entries[1::2], strict=True):
                    length = min(length, self.size - pos)
                    if bool(flags & wanted) != invert:
                        found.append(Extent(pos, length))
                    pos += length
                advanced = max(advanced, pos)
            if advanced <= offset:
                raise PluginError(
                    f"the NBD export {self.export!r} gave no {context} answer at byte {offset}"
                )
            offset = advanced
        return merge(found)

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset`` (short only at the end of the disk)."""
        length = max(0, min(length, self.size - offset))
        export = self.export

        def failed(pos: int, exc: Exception) -> Exception:
            return PluginError(f"reading the NBD export {export!r} at byte {pos} failed: {exc}")

        return pread_all(self._handle, offset, length, failed)

    def close(self) -> None:
        """Disconnect (the server may already be gone)."""
        handle, self._handle = getattr(self, "_handle", None), None
        if handle is None:
            return
        with contextlib.suppress(self._error):
            handle.shutdown()
        del handle

    def __enter__(self) -> NbdExport:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
