"""One pull-mode backup job on a domain: begun with a checkpoint, always ended.

libvirt exports each disk's point-in-time view over NBD until the job is ended
(``virDomainAbortJob`` is how a pull-mode job ends normally). The job runs under
a lock file per domain, and an already running backup job on the domain
(another appliance, another tool) is refused at once: libvirt itself would
block the second ``backupBegin`` for 30 s on its state lock and then fail.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import libvirt

from tapir.appliance.plugin_api import PluginContext, PluginError

from .connection import describe
from .domainxml import Disk
from .options import PUSH, TCP, ConnectionSettings

#: Seconds to wait for an aborted job to go away.
END_TIMEOUT = 60


class CheckpointBroken(PluginError):
    """The checkpoint an incremental starts from lost its bitmaps (a QEMU killed hard)."""


@dataclass(frozen=True)
class DiskMode:
    """How one disk takes part in a job."""

    disk: Disk
    since: str | None  # checkpoint of an incremental read; None: full


@dataclass
class NbdServer:
    """Where the job's NBD server listens."""

    socket: Path | None
    host: str | None
    port: int | None


@contextlib.contextmanager
def domain_lock(ctx: PluginContext, uuid: str, name: str) -> Iterator[None]:
    """Refuse a second backup of the domain from this appliance while one runs."""
    if ctx.state_dir is None:
        yield
        return
    folder = Path(ctx.state_dir) / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / f"{uuid}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PluginError(
                f"a backup of domain {name} is already running on this appliance; "
                "this run does not wait for it"
            ) from None
        yield
    finally:
        os.close(fd)


def refuse_if_busy(dom: libvirt.virDomain) -> None:
    """PluginError when the domain already runs a backup job (or any other job)."""
    try:
        dom.backupGetXMLDesc(0)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN_BACKUP:
            raise PluginError(f"domain {dom.name()}: {describe(exc)}") from None
    else:
        raise PluginError(
            f"a backup job is already running on domain {dom.name()} (another Tapir run or "
            "another tool); this run does not wait for it"
        )
    job = dom.jobInfo()[0]
    if job not in (libvirt.VIR_DOMAIN_JOB_NONE, libvirt.VIR_DOMAIN_JOB_COMPLETED):
        raise PluginError(
            f"domain {dom.name()} is busy with another job (a migration, a save...); "
            "try again when it ends"
        )


def _uniform(modes: list[DiskMode], others: list[Disk], scratch_dir: Path | None) -> bool:
    # libvirt picks (and later removes) scratch files itself only for disks the backup
    # XML does not list, so the disks are listed only when they must be: mixed modes,
    # a scratch folder, or a writable disk left out.
    return (
        scratch_dir is None
        and len({m.since for m in modes}) == 1
        and all(d.readonly or d.device != "disk" for d in others)
    )


def scratch_files(
    modes: list[DiskMode], others: list[Disk], scratch_dir: Path | None, suffix: str
) -> dict[str, Path]:
    """The scratch file of each disk when Tapir names them (empty: libvirt's own)."""
    if _uniform(modes, others, scratch_dir):
        return {}
    files = {}
    for mode in modes:
        disk = mode.disk
        if scratch_dir is None and (disk.type != "file" or not disk.source):
            raise PluginError(
                f"disk {disk.target} is a {disk.type} disk: set the endpoint's scratch_dir "
                "(a folder on the libvirt host for the backup's scratch files)"
            )
        folder = scratch_dir or Path(str(disk.source)).parent
        name = Path(str(disk.source or disk.target)).name
        files[disk.target] = folder / f"{name}.{suffix}.tapir-scratch"
    return files


def backup_xml(
    modes: list[DiskMode], others: list[Disk], server: NbdServer, scratch: dict[str, Path]
) -> str:
    """The ``<domainbackup mode='pull'>`` of a job."""
    if server.socket is not None:
        listen = f"<server transport='unix' socket={quoteattr(str(server.socket))}/>"
    else:
        listen = (
            f"<server transport='tcp' name={quoteattr(str(server.host))} "
            f"port='{int(server.port or 0)}'/>"
        )
    if not scratch:
        since = modes[0].since
        incremental = f"<incremental>{escape(since)}</incremental>" if since else ""
        return f"<domainbackup mode='pull'>{incremental}{listen}</domainbackup>"
    disks = []
    for mode in modes:
        target = mode.disk.target
        attrs = f"name={quoteattr(target)} backup='yes' type='file'"
        if mode.since is None:
            attrs += " backupmode='full'"
        else:
            attrs += f" backupmode='incremental' incremental={quoteattr(mode.since)}"
        path = quoteattr(str(scratch[target]))
        disks.append(f"<disk {attrs}><scratch file={path}/></disk>")
    disks += [f"<disk name={quoteattr(d.target)} backup='no'/>" for d in others]
    return f"<domainbackup mode='pull'>{listen}<disks>{''.join(disks)}</disks></domainbackup>"


def push_xml(modes: list[DiskMode], others: list[Disk], targets: dict[str, Path]) -> str:
    """The ``<domainbackup mode='push'>``: QEMU writes each disk into ``targets`` (qcow2)."""
    disks = []
    for mode in modes:
        target = mode.disk.target
        attrs = f"name={quoteattr(target)} backup='yes' type='file'"
        if mode.since is None:
            attrs += " backupmode='full'"
        else:
            attrs += f" backupmode='incremental' incremental={quoteattr(mode.since)}"
        path = quoteattr(str(targets[target]))
        disks.append(f"<disk {attrs}><target file={path}/><driver type='qcow2'/></disk>")
    disks += [f"<disk name={quoteattr(d.target)} backup='no'/>" for d in others]
    return f"<domainbackup mode='push'><disks>{''.join(disks)}</disks></domainbackup>"


def checkpoint_xml(name: str, with_bitmap: list[Disk], others: list[Disk]) -> str:
    """The ``<domaincheckpoint>``: a bitmap in every qcow2 disk backed up, none elsewhere."""
    disks = [f"<disk name={quoteattr(d.target)} checkpoint='bitmap'/>" for d in with_bitmap]
    disks += [f"<disk name={quoteattr(d.target)} checkpoint='no'/>" for d in others]
    return (
        f"<domaincheckpoint><name>{escape(name)}</name><description>Tapir backup</description>"
        f"<disks>{''.join(disks)}</disks></domaincheckpoint>"
    )


class BackupJob:
    """A begun pull-mode job; :meth:`end` (idempotent) always ends it."""

    def __init__(
        self,
        dom: libvirt.virDomain,
        server: NbdServer,
        temp_dir: Path | None,
        scratch: dict[str, Path],
        pushed: dict[str, Path] | None = None,
    ) -> None:
        self.dom = dom
        self.server = server
        self._temp_dir = temp_dir
        self._scratch = list(scratch.values())
        #: Push mode: each disk's copy, as Tapir sees it (None in pull mode).
        self.pushed = pushed
        self.active = True

    def wait_pushed(self, ctx: PluginContext) -> None:
        """Push mode: wait until QEMU has written every copy; PluginError when it failed."""
        while _backup_running(self.dom):
            ctx.check_canceled()
            time.sleep(0.1)
        self.active = False
        try:
            stats = self.dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
        except libvirt.libvirtError as exc:
            raise PluginError(f"push backup of {self.dom.name()}: {describe(exc)}") from None
        if stats.get("type") != libvirt.VIR_DOMAIN_JOB_COMPLETED:
            reason = stats.get("errmsg") or "the domain stopped, or QEMU could not write"
            raise PluginError(f"the push backup of {self.dom.name()} failed: {reason}")

    def _wait_gone(self, ctx: PluginContext) -> None:
        # QEMU ends the job's block jobs asynchronously after the abort; the next run
        # would otherwise find the domain busy.
        deadline = time.monotonic() + END_TIMEOUT
        while _backup_running(self.dom):
            if time.monotonic() > deadline:
                ctx.logger.warning(
                    "the backup job of %s did not end within %d s", self.dom.name(), END_TIMEOUT
                )
                return
            time.sleep(0.05)

    def end(self, ctx: PluginContext) -> None:
        """End the job (the NBD exports and scratch files go with it)."""
        if self.active and _backup_running(self.dom):
            self.active = False
            try:
                self.dom.abortJob()
            except libvirt.libvirtError as exc:
                # A domain that died ended its job with it.
                if self.dom.isActive():
                    ctx.logger.warning(
                        "ending the backup job of %s failed: %s", self.dom.name(), describe(exc)
                    )
            self._wait_gone(ctx)
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None
        # Scratch files Tapir named are not removed by libvirt; on a remote host they
        # are not reachable from here (docs/plugins/libvirt.md says to clean scratch_dir).
        for path in [*self._scratch, *(self.pushed or {}).values()]:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        self._scratch = []
        self.pushed = None if self.pushed is None else {}


def _backup_running(dom: libvirt.virDomain) -> bool:
    try:
        dom.backupGetXMLDesc(0)
    except libvirt.libvirtError:
        return False
    return True


def _server(settings: ConnectionSettings, uuid: str) -> tuple[NbdServer, Path | None]:
    if settings.nbd_transport == TCP:
        return NbdServer(None, settings.nbd_host, settings.nbd_port), None
    if settings.nbd_socket_dir is not None:
        return NbdServer(settings.nbd_socket_dir / f"tapir-{uuid}.sock", None, None), None
    temp = Path(tempfile.mkdtemp(prefix="tapir-nbd-"))
    return NbdServer(temp / "nbd.sock", None, None), temp


def begin(
    dom: libvirt.virDomain,
    settings: ConnectionSettings,
    modes: list[DiskMode],
    others: list[Disk],
    checkpoint: str | None,
    ctx: PluginContext,
) -> BackupJob:
    """Begin a pull-mode job creating ``checkpoint``; CheckpointBroken when the incremental's
    checkpoint lost its bitmaps."""
    suffix = checkpoint or f"tapir-{os.getpid()}"
    pushed = None
    if settings.backup_mode == PUSH:
        assert settings.push_dir is not None and settings.push_dir_local is not None
        server, temp, scratch = NbdServer(None, None, None), None, {}
        names = {
            m.disk.target: f"tapir-{dom.UUIDString()}-{suffix}-{m.disk.target}.qcow2" for m in modes
        }
        xml = push_xml(modes, others, {t: settings.push_dir / n for t, n in names.items()})
        pushed = {t: settings.push_dir_local / n for t, n in names.items()}
    else:
        server, temp = _server(settings, dom.UUIDString())
        scratch = scratch_files(modes, others, settings.scratch_dir, suffix)
        xml = backup_xml(modes, others, server, scratch)
    cp_xml = None
    if checkpoint is not None:
        with_bitmap = [m.disk for m in modes if m.disk.supports_checkpoints]
        rest = [m.disk for m in modes if not m.disk.supports_checkpoints] + others
        cp_xml = checkpoint_xml(checkpoint, with_bitmap, rest)
    try:
        dom.backupBegin(xml, cp_xml, 0)
    except libvirt.libvirtError as exc:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
        for path in scratch.values():
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        code = exc.get_error_code()
        if code == libvirt.VIR_ERR_CHECKPOINT_INCONSISTENT:
            raise CheckpointBroken(describe(exc)) from None
        if code == libvirt.VIR_ERR_OPERATION_TIMEOUT:
            raise PluginError(
                f"domain {dom.name()} is busy (another job holds it): {describe(exc)}"
            ) from None
        raise PluginError(f"cannot begin the backup of {dom.name()}: {describe(exc)}") from None
    return BackupJob(dom, server, temp, scratch, pushed)
