"""VDDK as an optional data transport: nbdkit's vddk plugin, read through libnbd.

The default transport (the datastore HTTPS path) needs no proprietary software.
Customers who install VMware's Virtual Disk Development Kit can read disks through
it instead: Tapir starts a private ``nbdkit`` with its ``vddk`` plugin on a Unix
socket in a private folder, for one disk of one snapshot, read-only, and reads it
with libnbd. VDDK then chooses among the transports asked (``nbdssl:nbd`` by
default) and answers allocation queries (``QueryAllocatedBlocks``), which nbdkit
serves as NBD ``base:allocation`` block status.

The password never appears on a command line: nbdkit reads it from an inherited
pipe (``password=-FD``). VDDK pins the server by the SHA-1 thumbprint of its
certificate; Tapir computes it from a TLS handshake made under the endpoint's own
TLS settings (pinned SHA-256 fingerprint, CA file), so VDDK trusts exactly the
server the SOAP connection trusts.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from tapir.appliance.plugin_api import ConnectionFailed, OptionSpec, PluginError
from tapir.appliance.plugin_api.libnbd import load_nbd, pread_all

from .connection import CertificateMismatch, ConnectionSettings, _ssl_context, format_fingerprint

#: Largest block status range asked at once (the NBD protocol counts in 32 bits).
BLOCK_STATUS_MAX = 1 << 30
SECTOR = 512
_STATE_HOLE = 1
_STOP_WAIT = 10.0


@dataclass(frozen=True)
class VddkOptions:
    """Where VDDK and nbdkit are, and how VDDK should move the data."""

    #: The unpacked ``vmware-vix-disklib-distrib`` folder (it holds ``lib64/``).
    libdir: Path
    #: VDDK transport modes in order of preference (``nbdssl``, ``nbd``, ``hotadd``, ``san``).
    transports: str = "nbdssl:nbd"
    #: The nbdkit program.
    nbdkit: str = "nbdkit"
    #: nbdkit's vddk plugin: its name (looked up in nbdkit's plugin folder) or a path.
    plugin: str = "vddk"
    #: Seconds nbdkit may take to load VDDK and listen.
    start_timeout: float = 60.0


#: Endpoint options that select and tune the VDDK transport (``vddk_libdir`` turns it on).
VDDK_ENDPOINT_OPTIONS = [
    OptionSpec(
        "vddk_libdir",
        "path",
        "read disks through VDDK: the unpacked vmware-vix-disklib-distrib folder",
    ),
    OptionSpec(
        "vddk_transports",
        "str",
        "VDDK transport modes in order of preference",
        default="nbdssl:nbd",
    ),
    OptionSpec(
        "vddk_plugin",
        "str",
        "nbdkit's vddk plugin: a name in nbdkit's plugin folder or the path of its .so",
        default="vddk",
    ),
]


def vddk_options(options: Mapping[str, object]) -> VddkOptions | None:
    """The VDDK settings of an endpoint's options, or None when VDDK is not configured."""
    libdir = options.get("vddk_libdir")
    if libdir in (None, ""):
        return None
    values: dict[str, str] = {}
    for name in ("vddk_libdir", "vddk_transports", "vddk_plugin"):
        value = options.get(name)
        if value is None:
            continue
        if not isinstance(value, str | Path) or not str(value).strip():
            raise PluginError(f"endpoint option {name!r} must be a non-empty text, not {value!r}")
        values[name] = str(value).strip()
    transports = values.get("vddk_transports", "nbdssl:nbd")
    known = {"file", "san", "hotadd", "nbdssl", "nbd"}
    unknown = [mode for mode in transports.split(":") if mode not in known]
    if unknown:
        raise PluginError(
            f"endpoint option 'vddk_transports': unknown mode(s) {', '.join(unknown)} "
            f"(known: {', '.join(sorted(known))})"
        )
    return VddkOptions(
        libdir=Path(values["vddk_libdir"]),
        transports=transports,
        plugin=values.get("vddk_plugin", "vddk"),
    )


def server_thumbprint(settings: ConnectionSettings) -> str:
    """The SHA-1 thumbprint (``AB:CD:...``) of the server's certificate, as VDDK wants it.

    The handshake goes through the endpoint's TLS policy, so a pinned SHA-256
    fingerprint or a CA file is checked first; raises :class:`ConnectionFailed`.
    """
    context = _ssl_context(settings)
    try:
        with (
            socket.create_connection((settings.host, settings.port), settings.timeout) as raw,
            context.wrap_socket(raw, server_hostname=settings.host) as tls,
        ):
            der = tls.getpeercert(binary_form=True) or b""
    except CertificateMismatch as exc:
        raise ConnectionFailed(
            f"the TLS certificate of {settings.address} does not match the pinned fingerprint "
            f"(expected {format_fingerprint(exc.expected)}, the server presented "
            f"{format_fingerprint(exc.actual)}); not handing it to VDDK"
        ) from None
    except ssl.SSLCertVerificationError as exc:
        raise ConnectionFailed(
            f"the TLS certificate of {settings.address} is not trusted "
            f"({exc.verify_message or exc.reason}); pin its SHA-256 fingerprint"
        ) from None
    except (OSError, ssl.SSLError) as exc:
        raise ConnectionFailed(f"cannot reach {settings.address}: {exc}") from None
    if not der:
        raise ConnectionFailed(f"{settings.address} presented no TLS certificate")
    return format_fingerprint(hashlib.sha1(der, usedforsecurity=False).hexdigest())


def _check_install(options: VddkOptions) -> str:
    nbdkit = shutil.which(options.nbdkit)
    if nbdkit is None:
        raise PluginError(
            f"the VDDK transport needs nbdkit ({options.nbdkit!r} not found): "
            "install the Debian package nbdkit"
        )
    libdir = Path(options.libdir)
    if not libdir.is_dir():
        raise PluginError(
            f"the VDDK library folder {libdir} does not exist: unpack VMware's Virtual Disk "
            "Development Kit (vmware-vix-disklib-distrib) there or correct the setting"
        )
    if not any((libdir / "lib64").glob("libvixDiskLib.so.*")):
        raise PluginError(
            f"{libdir} holds no lib64/libvixDiskLib.so.*: point the VDDK setting at the "
            "unpacked vmware-vix-disklib-distrib folder"
        )
    return nbdkit


def _first_error(log: str) -> str:
    """nbdkit's first ``error:`` message, without its ``nbdkit: vddk[1]: error:`` prefix."""
    for line in log.splitlines():
        if "error:" in line:
            return line.split("error:", 1)[1].strip()
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def _collect_allocation(
    found: list[tuple[int, int]], context: str, start: int, entries: list[int], *_: Any
) -> int:
    """libnbd's block status callback: ``(offset, length)``, length negative for holes."""
    if context == "base:allocation":
        pos = start
        for length, flags in zip(entries[::2], entries[1::2], strict=True):
            found.append((pos, -length if flags & _STATE_HOLE else length))
            pos += length
    return 0


def _reaped(proc: subprocess.Popen[bytes]) -> bool:
    try:
        proc.wait(_STOP_WAIT)
    except subprocess.TimeoutExpired:
        return False
    return True


class VddkDisk:
    """One disk of one snapshot, read through a private nbdkit running VDDK.

    Use it as a context manager (or call :meth:`close`): nbdkit is stopped and its
    private folder removed however the block ends.
    """

    size: int

    def __init__(
        self,
        settings: ConnectionSettings,
        options: VddkOptions,
        vm_moref: str,
        snapshot_moref: str,
        file_name: str,
    ) -> None:
        """Start nbdkit for ``file_name`` (``[datastore] vm/disk.vmdk``) and connect to it.

        Raises :class:`PluginError` (VDDK or nbdkit missing, library not loadable,
        disk not found) or :class:`ConnectionFailed` (server unreachable, login refused).
        """
        self.settings = settings
        self.options = options
        self.file_name = file_name
        self.snapshot_moref = snapshot_moref
        self._handle: Any = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir = Path(tempfile.mkdtemp(prefix="tapir-vddk-"))
        self._log_path = self._workdir / "nbdkit.log"
        try:
            nbd = load_nbd("the VDDK transport", "python3-libnbd and nbdkit")
            self._error: type[Exception] = nbd.Error
            nbdkit = _check_install(options)
            thumbprint = server_thumbprint(settings)
            self._start(nbdkit, thumbprint, vm_moref)
            self._handle = nbd.NBD()
            self._handle.add_meta_context("base:allocation")
            try:
                self._handle.connect_unix(str(self._workdir / "nbd.sock"))
                self.size = self._handle.get_size()
            except nbd.Error as exc:
                raise self._failure(f"cannot open {file_name} through VDDK", exc) from None
        except BaseException:
            self.close()
            raise

    @property
    def pid(self) -> int | None:
        """nbdkit's process id while it runs (for diagnostics and tests)."""
        return self._proc.pid if self._proc is not None else None

    def _start(self, nbdkit: str, thumbprint: str, vm_moref: str) -> None:
        settings, options = self.settings, self.options
        read_end, write_end = os.pipe()
        try:
            # The password fits the pipe buffer; nbdkit reads it to EOF at start-up.
            os.write(write_end, settings.password.encode())
            os.close(write_end)
            write_end = -1
            argv = [
                nbdkit,
                "--foreground",
                # Tied to the thread that starts it: nbdkit dies with the worker.
                "--exit-with-parent",
                "--readonly",
                "-U",
                str(self._workdir / "nbd.sock"),
                "-P",
                str(self._workdir / "nbdkit.pid"),
                options.plugin,
                f"libdir={options.libdir}",
                f"server={settings.host}",
                f"port={settings.port}",
                f"user={settings.user}",
                f"password=-{read_end}",
                f"thumbprint={thumbprint}",
                f"vm=moref={vm_moref}",
                f"snapshot={self.snapshot_moref}",
                f"transports={options.transports}",
                f"file={self.file_name}",
            ]
            with open(self._log_path, "wb") as log:
                try:
                    self._proc = subprocess.Popen(
                        argv,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=log,
                        pass_fds=(read_end,),
                    )
                except OSError as exc:
                    raise PluginError(f"cannot start {nbdkit}: {exc}") from None
        finally:
            os.close(read_end)
            if write_end >= 0:
                os.close(write_end)
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.options.start_timeout
        # nbdkit writes its pid file once it listens on the socket.
        while not (self._workdir / "nbdkit.pid").exists():
            if self._proc.poll() is not None:
                raise self._failure(f"nbdkit could not serve {self.file_name} through VDDK")
            if time.monotonic() > deadline:
                raise PluginError(
                    f"nbdkit did not start within {self.options.start_timeout:g} s "
                    f"for {self.file_name}: {_first_error(self._log())}"
                )
            time.sleep(0.02)

    def _log(self) -> str:
        try:
            return self._log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _failure(self, what: str, exc: BaseException | None = None) -> PluginError:
        """The clearest error for what nbdkit (and VDDK through it) logged."""
        log = self._log()
        message = _first_error(log) if log.strip() else str(exc or "nbdkit exited")
        settings = self.settings
        if "VixDiskLib_ConnectEx" in message:
            return ConnectionFailed(
                f"VDDK could not log in to {settings.address} as {settings.user!r}: "
                f"{message.split(':', 1)[1].strip()}"
            )
        if "cannot open plugin" in message:
            return PluginError(
                f"nbdkit has no {self.options.plugin!r} plugin ({message}): the VDDK transport "
                "needs an nbdkit built with its vddk plugin (Debian's nbdkit omits it)"
            )
        if "libvixDiskLib" in message or "VDDK symbol" in message or "VixDiskLib_InitEx" in message:
            return PluginError(
                f"cannot load the VDDK library from {self.options.libdir}: {message}"
            )
        if "VixDiskLib_Open" in message:
            return PluginError(
                f"VDDK cannot open {self.file_name} in snapshot {self.snapshot_moref}: "
                f"{message.split(':', 1)[1].strip()}"
            )
        return PluginError(f"{what}: {message}")

    def _call_failed(self, what: str, exc: BaseException) -> PluginError:
        handle, proc = self._handle, self._proc
        if handle is not None and (handle.aio_is_dead() or handle.aio_is_closed()):
            # The socket closes before the dying nbdkit can be reaped: give it a moment.
            exited = proc is not None and _reaped(proc)
            log = self._log()
            if not exited:
                cause = str(exc)
            elif "error:" in log:
                cause = _first_error(log)
            else:
                cause = f"exit status {proc.returncode if proc else '?'}"
            return ConnectionFailed(
                f"nbdkit (VDDK) {'exited' if exited else 'dropped the connection'} "
                f"while {what}: {cause}"
            )
        return self._failure(what, exc)

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset``; short only at the end of the disk."""
        if offset < 0 or length < 0:
            raise ValueError(f"bad read: offset {offset}, length {length}")
        if self._handle is None:
            raise PluginError(f"{self.file_name}: the VDDK transport is closed")
        end = min(offset + length, self.size)
        if end <= offset:
            return b""
        # VDDK reads whole sectors; the disk's size is a whole number of them.
        start = offset - offset % SECTOR
        stop = min(self.size, -(-end // SECTOR) * SECTOR)
        data = pread_all(
            self._handle,
            start,
            stop - start,
            lambda pos, exc: self._call_failed(f"reading {self.file_name} at byte {pos}", exc),
        )
        return data[offset - start : end - start]

    def allocated_extents(self) -> list[tuple[int, int]]:
        """``(offset, length)`` of the disk's allocated areas, merged, in order.

        From NBD ``base:allocation``, which nbdkit's vddk plugin answers with VDDK's
        ``QueryAllocatedBlocks`` (whole 64 KiB chunks). A server that cannot tell
        reports the whole disk as allocated.
        """
        if self._handle is None:
            raise PluginError(f"{self.file_name}: the VDDK transport is closed")
        if not self._handle.can_meta_context("base:allocation"):
            return [(0, self.size)] if self.size else []
        extents: list[tuple[int, int]] = []
        offset = 0
        while offset < self.size:
            found: list[tuple[int, int]] = []
            collect = functools.partial(_collect_allocation, found)
            count = min(BLOCK_STATUS_MAX, self.size - offset)
            try:
                self._handle.block_status(count, offset, collect)
            except self._error as exc:
                raise self._call_failed(
                    f"asking the allocation of {self.file_name} at byte {offset}", exc
                ) from None
            if not found:
                raise PluginError(
                    f"nbdkit answered no allocation for {self.file_name} at byte {offset}"
                )
            for pos, signed in found:
                length = min(abs(signed), self.size - pos)
                if signed < 0 or length <= 0:
                    continue
                if extents and extents[-1][0] + extents[-1][1] == pos:
                    extents[-1] = (extents[-1][0], extents[-1][1] + length)
                else:
                    extents.append((pos, length))
            offset = min(self.size, found[-1][0] + abs(found[-1][1]))
        return extents

    def close(self) -> None:
        """Disconnect, stop nbdkit, remove the private folder; safe to call twice."""
        handle, self._handle = self._handle, None
        if handle is not None:
            with contextlib.suppress(Exception):
                handle.shutdown()
            del handle
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(_STOP_WAIT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> VddkDisk:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
