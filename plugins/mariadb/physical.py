"""Physical backups: ``mariadb-backup --backup --stream=xbstream`` straight into the sink.

The stream goes to the sink as it comes (nothing staged on local disk); only the
small checkpoint and info files land in a private folder through
``--extra-lsndir``, for the LSN the next incremental starts from and the binary
log position the backup is consistent at.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

from tapir.appliance.plugin_api import BackupSink, Item, ItemKind, PluginContext, PluginError

from .chain import Physical
from .client import option_file, tail, tool
from .options import ConnectionSettings

BLOCK = 1024 * 1024
_BINLOG_POS = re.compile(
    r"filename '(?P<file>[^']*)', position '(?P<pos>\d+)'"
    r"(?:, GTID of the last change '(?P<gtid>[^']*)')?"
)


def read_key_values(path: Path) -> dict[str, str]:
    """``key = value`` lines of xtrabackup_checkpoints / xtrabackup_info."""
    out: dict[str, str] = {}
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            key, sep, value = line.partition(" = ")
            if sep:
                out[key.strip()] = value.strip()
    return out


def stream_backup(
    settings: ConnectionSettings,
    datadir: str,
    path: str,
    sink: BackupSink,
    ctx: PluginContext,
    incremental_lsn: int | None = None,
) -> Physical:
    """Stream one full (or incremental from ``incremental_lsn``) backup as file ``path``."""
    if not Path(datadir).is_dir():
        raise PluginError(
            f"the server's data directory {datadir} is not on this machine: mariadb-backup reads "
            "the data files directly, so the appliance must run on the database host"
        )
    level = "full" if incremental_lsn is None else "incremental"
    with (
        tempfile.TemporaryDirectory(prefix="tapir-mariadb-lsn-") as lsndir,
        option_file(settings) as cnf,
    ):
        argv = tool(
            "mariadb-backup",
            cnf,
            "--backup",
            "--stream=xbstream",
            f"--datadir={datadir}",
            f"--extra-lsndir={lsndir}",
            f"--target-dir={lsndir}",
        )
        if incremental_lsn is not None:
            argv.append(f"--incremental-lsn={incremental_lsn}")
        ctx.logger.info("%s: %s backup with mariadb-backup", settings.where, level)
        ctx.progress.advance(current=f"{level} backup of {settings.where}")
        with tempfile.TemporaryFile() as errors:
            try:
                proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors)
            except FileNotFoundError:
                raise PluginError(
                    "mariadb-backup is not installed (Debian package mariadb-backup)"
                ) from None
            assert proc.stdout is not None
            writer = sink.open_file(Item(path=path.encode(), kind=ItemKind.FILE, mode=0o600))
            try:
                while block := proc.stdout.read(BLOCK):
                    writer.write(block)
                    ctx.check_canceled()
            except BaseException:
                proc.kill()
                proc.wait()
                raise
            code = proc.wait()
            if code != 0:
                errors.seek(0)
                raise PluginError(
                    f"mariadb-backup failed (exit {code}) on {settings.where}; no recovery point "
                    f"was kept: {tail(errors.read())}"
                )
            writer.close()
        checkpoints = read_key_values(Path(lsndir) / "xtrabackup_checkpoints")
        info = read_key_values(Path(lsndir) / "xtrabackup_info")
    if "to_lsn" not in checkpoints:
        raise PluginError("mariadb-backup wrote no checkpoint LSN; the backup cannot be trusted")
    m = _BINLOG_POS.search(info.get("binlog_pos", ""))
    return Physical(
        path=path,
        level=level,
        from_lsn=int(checkpoints.get("from_lsn", 0)),
        to_lsn=int(checkpoints["to_lsn"]),
        binlog_file=m["file"] if m else "",
        binlog_pos=int(m["pos"]) if m else 0,
        gtid=(m["gtid"] or "") if m else "",
        time=0.0,
    )
