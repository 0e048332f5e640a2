"""Restoring a cluster point: a new data directory, recovered to latest or to a target.

The base tar is unpacked into the target, the point's WAL segments are written
to ``<target>/tapir_wal`` (fetched by ``restore_command``), the recovery target
goes into ``postgresql.auto.conf`` with ``recovery.signal``, and the server is
started and watched until recovery ends and it is promoted (or fails, with its
log's words). A target that holds data is refused unless the overwrite mode is
``always``; a running server's folder is refused always.
"""

from __future__ import annotations

import io
import os
import pwd
import re
import shutil
import subprocess
import tarfile
import time
from datetime import datetime
from pathlib import Path

from tapir.appliance.plugin_api import (
    Item,
    ItemKind,
    PluginContext,
    PluginError,
    RestoreRequest,
    RestoreResult,
    RestoreSource,
)

from .chain import BASE_PATH, CHAIN_PATH, WAL_DIR, Chain
from .connection import bindir
from .restore_options import parse_time, recovery_target
from .wal import format_lsn, parse_lsn

WAL_FOLDER = "tapir_wal"
BLOCK = 1 << 20
LOG_FILE = "tapir-restore.log"
#: Unix socket paths are limited to 107 bytes; longer target folders use /tmp.
_SOCKET_MAX = 90
_PLAIN_PATH = re.compile(r"[\w./+-]+")
#: Seconds a started server may take to write its postmaster.pid.
_PID_WAIT = 30


def prepare_target(target: Path, overwrite: str) -> None:
    """An empty folder at ``target``; refuses one that holds data unless ``always``."""
    if "'" in str(target) or "\n" in str(target):
        raise PluginError(f"{target!s}: a quote or newline cannot go into restore_command")
    if target.exists() and not target.is_dir():
        raise PluginError(f"{target} exists and is not a folder")
    if target.is_dir() and any(target.iterdir()):
        if (target / "postmaster.pid").exists():
            raise PluginError(f"{target} belongs to a running (or crashed) server; stop it first")
        if overwrite != "always":
            raise PluginError(
                f"{target} is not empty; restore into a new folder or overwrite=always "
                "to replace its contents"
            )
        for child in target.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    target.mkdir(parents=True, exist_ok=True)


def _check_target_in_window(target: tuple[str, str] | None, chain: Chain) -> None:
    """Refuse targets this point cannot reach, before anything is written."""
    if target is None:
        return
    kind, value = target
    if kind == "time":
        when = parse_time(value)
        if when < datetime.fromisoformat(chain.base_started_at):
            raise PluginError(
                f"target_time {value} is before this point's base backup "
                f"(started {chain.base_started_at}); restore an older full backup"
            )
        if chain.recoverable_until and when > datetime.fromisoformat(chain.recoverable_until):
            raise PluginError(
                f"target_time {value} is after the WAL this point holds "
                f"(up to {chain.recoverable_until}); restore a later point"
            )
    elif kind == "lsn":
        lsn = parse_lsn(value)
        if lsn < chain.stop_lsn:
            raise PluginError(
                f"target_lsn {value} is before the end of this point's base backup "
                f"({format_lsn(chain.stop_lsn)}); restore an older full backup"
            )
        if lsn > chain.wal_end_lsn:
            raise PluginError(
                f"target_lsn {value} is after the WAL this point holds "
                f"(up to {format_lsn(chain.wal_end_lsn)}); restore a later point"
            )


def _copy(source: RestoreSource, item: Item, dest: Path, ctx: PluginContext) -> int:
    done = 0
    with source.open(item) as src, dest.open("wb") as out:
        while block := src.read(1 << 20):
            out.write(block)
            done += len(block)
            ctx.progress.advance(bytes_done=len(block))
    os.chmod(dest, 0o600)
    return done


def _owner(options: dict[str, object]) -> pwd.struct_passwd | None:
    """The system user the cluster runs as; None: the appliance's own user."""
    name = options.get("os_user")
    if os.geteuid() != 0:
        if name and name != pwd.getpwuid(os.geteuid()).pw_name:
            raise PluginError(f"only root can restore a cluster for another user ({name})")
        return None
    try:
        return pwd.getpwnam(str(name or "postgres"))
    except KeyError:
        raise PluginError(
            f"system user {name or 'postgres'!r} does not exist (PostgreSQL refuses to run as "
            "root: give os_user)"
        ) from None


def _chown_tree(root: Path, owner: pwd.struct_passwd) -> None:
    os.chown(root, owner.pw_uid, owner.pw_gid)
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            os.chown(os.path.join(folder, name), owner.pw_uid, owner.pw_gid, follow_symlinks=False)


def _configure(target: Path, recovery: tuple[str, str] | None, options: dict[str, object]) -> None:
    lines = [
        "",
        "# Added by Tapir's point-in-time restore; remove after recovery if you like.",
        f'restore_command = \'cp "{target / WAL_FOLDER}/%f" "%p"\'',
        "recovery_target_action = 'promote'",
    ]
    if recovery is not None:
        kind, value = recovery
        lines.append(f"recovery_target_{kind} = '{value}'")
        inclusive = options.get("target_inclusive", True)
        lines.append(f"recovery_target_inclusive = {'on' if inclusive else 'off'}")
    else:
        lines.append("recovery_target_timeline = 'latest'")
    with (target / "postgresql.auto.conf").open("a") as conf:
        conf.write("\n".join(lines) + "\n")
    (target / "recovery.signal").touch()
    # A copied server's leftovers that must not steer the new one.
    for stale in ("postmaster.pid", "postmaster.opts", "standby.signal"):
        (target / stale).unlink(missing_ok=True)


def _server_options(target: Path, options: dict[str, object]) -> str:
    parts = []
    port = options.get("port")
    if port:
        parts.append(f"-p {_int_option(options, 'port', 0)}")
    listen = str(options.get("listen_addresses") or "localhost")
    if "'" in listen or " " in listen:
        raise PluginError("listen_addresses must be a comma-separated list without spaces")
    parts.append(f"-c listen_addresses='{listen}'")
    # pg_ctl hands -o to a shell, and socket paths are short: odd folders use /tmp.
    plain = _PLAIN_PATH.fullmatch(str(target)) and len(str(target)) < _SOCKET_MAX
    socket_dir = str(target) if plain else "/tmp"
    parts.append(f"-k {socket_dir}")
    return " ".join(parts)


def _pm_status(target: Path) -> str | None:
    """postmaster.pid's status line ("starting", "standby", "ready"), None: not running."""
    try:
        lines = (target / "postmaster.pid").read_text().splitlines()
    except FileNotFoundError:
        return None
    return lines[7].strip() if len(lines) > 7 else "starting"


def _log_tail(target: Path) -> str:
    try:
        lines = (target / LOG_FILE).read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "no server log"
    wanted = [line for line in lines if "FATAL" in line or "ERROR" in line or "PANIC" in line]
    return " | ".join((wanted or lines)[-4:])


def start_and_wait(
    target: Path,
    major: int,
    owner: pwd.struct_passwd | None,
    options: dict[str, object],
    ctx: PluginContext,
) -> None:
    """Start the restored server and wait until recovery ended and it was promoted."""
    prefix = ["runuser", "-u", owner.pw_name, "--"] if owner is not None else []
    pg_ctl = bindir(major) / "pg_ctl"
    done = subprocess.run(
        [
            *prefix,
            str(pg_ctl),
            "-D",
            str(target),
            "-o",
            _server_options(target, options),
            "-l",
            str(target / LOG_FILE),
            "-W",
            "start",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise PluginError(f"pg_ctl could not start the restored server: {done.stderr.strip()}")
    timeout = _int_option(options, "recovery_timeout", 3600)
    started = time.monotonic()
    seen_pid = False
    while True:
        status = _pm_status(target)
        seen_pid = seen_pid or status is not None
        if status == "ready" and not (target / "recovery.signal").exists():
            return
        waited = time.monotonic() - started
        if status is None and (seen_pid or waited > _PID_WAIT):
            raise PluginError(f"the restored server stopped during recovery: {_log_tail(target)}")
        if waited > timeout:
            raise PluginError(
                f"recovery did not finish within {timeout} s; the server still runs in {target} "
                f"(log: {target / LOG_FILE})"
            )
        ctx.check_canceled()
        time.sleep(0.2)


def _int_option(options: dict[str, object], name: str, default: int) -> int:
    value = options.get(name)
    if value in (None, ""):
        return default
    try:
        return int(str(value))
    except ValueError:
        raise PluginError(f"restore option {name} must be a whole number, not {value!r}") from None


def restore_files(
    request: RestoreRequest, source: RestoreSource, ctx: PluginContext
) -> RestoreResult:
    """Some stored files as they are (``base.tar``, ``wal/...``), for recovery by hand."""
    assert request.target is not None
    result = RestoreResult()
    for item in source.items(request.paths):
        if item.kind != ItemKind.FILE:
            continue
        dest = Path(request.target) / item.path.decode()
        if dest.exists() and request.overwrite != "always":
            result.skipped.append(item.path.decode())
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        result.bytes_restored += _copy(source, item, dest, ctx)
        result.items_restored += 1
    return result


def restore_cluster(
    request: RestoreRequest, source: RestoreSource, ctx: PluginContext
) -> RestoreResult:
    """Restore a cluster point into ``request.target`` and (by default) start it.

    With ``request.paths``, only those stored files are written, unchanged.
    """
    if request.in_place or request.target is None:
        raise PluginError(
            "a cluster is restored into a new data directory: give a target folder (--to DIR)"
        )
    if request.paths:
        return restore_files(request, source, ctx)
    options = dict(request.options)
    recovery = recovery_target(options)
    items = {item.path: item for item in source.items()}
    chain = Chain.from_item(items.get(CHAIN_PATH))
    _check_target_in_window(recovery, chain)
    base = items.get(BASE_PATH)
    if base is None:
        raise PluginError(f"recovery point {source.recovery_point_id} holds no base backup")
    owner = _owner(options)
    major = _int_option(dict(source.metadata), "version_num", 0) // 10000
    target = Path(request.target)
    prepare_target(target, request.overwrite)
    os.chmod(target, 0o700)
    result = RestoreResult()
    ctx.progress.set_total(bytes_total=sum(i.size for i in items.values()))
    ctx.progress.advance(current="base backup")
    with (
        io.BufferedReader(source.open(base), BLOCK) as stream,  # type: ignore[arg-type]
        tarfile.open(fileobj=stream, mode="r|") as tar,
    ):
        tar.extractall(target, filter="data")
    result.items_restored += 1
    result.bytes_restored += base.size
    ctx.progress.advance(bytes_done=base.size)
    wal_folder = target / WAL_FOLDER
    wal_folder.mkdir(mode=0o700)
    for path, item in items.items():
        if path.startswith(WAL_DIR + b"/"):
            ctx.progress.advance(current=path.decode())
            result.bytes_restored += _copy(
                source, item, wal_folder / path.rsplit(b"/", 1)[1].decode(), ctx
            )
            result.items_restored += 1
            ctx.check_canceled()
    _configure(target, recovery, options)
    if owner is not None:
        _chown_tree(target, owner)
    where = f"{recovery[0]} {recovery[1]}" if recovery else "the end of the stored WAL"
    if options.get("start", True) in (False, "false", "no", "0"):
        result.warnings.append(
            f"not started: start it with pg_ctl -D {target} start; it recovers to {where}"
        )
        return result
    if not major:
        raise PluginError("the point does not say its PostgreSQL version; start it by hand")
    ctx.progress.advance(current=f"recovering to {where}")
    start_and_wait(target, major, owner, options, ctx)
    ctx.logger.info("restored cluster in %s recovered to %s and promoted", target, where)
    return result
