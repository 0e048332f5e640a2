"""Point-in-time restore into a new data directory.

The physical backups of the point (the full and the incrementals up to the
requested moment) are extracted (``mbstream``), prepared (``mariadb-backup
--prepare``, incrementals applied in order) and moved into the target folder; a
private server (no network, its socket in a private folder) then starts on it
and the archived binary logs are replayed from the last backup's binlog position
up to the requested time or position (``mariadb-binlog ... | mariadb``). The
server is shut down cleanly at the end: the folder is ready for ``mariadbd
--datadir``.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tapir.appliance.plugin_api import (
    ConnectionFailed,
    Item,
    PluginContext,
    PluginError,
    RestoreRequest,
    RestoreResult,
    RestoreSource,
)

from .binlogs import utc
from .chain import CHAIN_PATH, Binlog, Chain, Physical, binlog_index
from .client import connect, option_file, run_tool, tail, tool
from .options import ConnectionSettings

BLOCK = 1024 * 1024
SERVER_START_WAIT = 120.0


@dataclass(frozen=True)
class Target:
    """Where to stop: None for everything the point holds."""

    epoch: int | None = None
    position: tuple[str, int] | None = None


def parse_target(options: dict[str, object]) -> tuple[Target, list[str]]:
    """The stop_datetime / stop_position restore options; at most one of them."""
    warnings: list[str] = []
    when, where = options.get("stop_datetime"), options.get("stop_position")
    if when and where:
        raise PluginError("give stop_datetime or stop_position, not both")
    if when:
        try:
            moment = dt.datetime.fromisoformat(str(when))
        except ValueError:
            raise PluginError(f"stop_datetime {when!r} is not an ISO 8601 date and time") from None
        if moment.tzinfo is None:
            moment = moment.astimezone()  # the appliance's local time
        epoch = moment.timestamp()
        if epoch != math.floor(epoch):
            # Binlog events carry whole seconds: round down, never replay past the moment.
            warnings.append(
                f"binary log times have one-second resolution: stopping at "
                f"{utc(math.floor(epoch))}, the start of the second holding {moment.isoformat()}"
            )
        return Target(epoch=math.floor(epoch)), warnings
    if where:
        name, sep, pos = str(where).rpartition(":")
        if not sep or not pos.isdigit():
            raise PluginError(f"stop_position {where!r} is not FILE:POSITION")
        binlog_index(name)
        return Target(position=(name, int(pos))), warnings
    return Target(), warnings


def choose_backups(physical: list[Physical], target: Target) -> list[Physical]:
    """The full and the incrementals that end before the target."""
    if target.epoch is not None:
        chosen = [p for p in physical if p.time <= target.epoch]
    elif target.position is not None:
        stop = binlog_index(target.position[0]), target.position[1]
        chosen = [
            p
            for p in physical
            if p.binlog_file and (binlog_index(p.binlog_file), p.binlog_pos) <= stop
        ]
    else:
        chosen = list(physical)
    # Incrementals only count on top of everything before them.
    prefix = physical[: len(chosen)]
    if not prefix or prefix != chosen:
        first = physical[0] if physical else None
        start = f"{utc(first.time)} ({first.binlog_file}:{first.binlog_pos})" if first else "?"
        raise PluginError(
            f"this recovery point starts at {start}, after the requested moment; restore an "
            "older recovery point"
        )
    return prefix


def choose_binlogs(chain: Chain, base: Physical, target: Target) -> tuple[list[Binlog], list[str]]:
    """The archived binlogs to replay from ``base``'s position, checked for gaps."""
    warnings: list[str] = []
    if not base.binlog_file:
        if chain.binlogs:
            warnings.append("the backup has no binlog position: binary logs not replayed")
        return [], warnings
    name, start = binlog_index(base.binlog_file)
    stop = binlog_index(target.position[0])[1] if target.position else None
    chosen = [
        b
        for b in chain.binlogs
        if binlog_index(b.name)[0] == name
        and binlog_index(b.name)[1] >= start
        and (stop is None or binlog_index(b.name)[1] <= stop)
    ]
    expected = start
    for b in chosen:
        if binlog_index(b.name)[1] != expected:
            raise PluginError(
                f"binary log {name}.{expected:06d} is missing from this recovery point: changes "
                f"after {utc(base.time)} cannot be replayed"
            )
        expected += 1
    covered = chain.archived_until if chosen else base.time
    if target.epoch is not None and target.epoch > covered:
        warnings.append(
            f"the point holds changes up to {utc(covered)} only, not up to {utc(target.epoch)}: "
            "restored to its last change"
        )
    if stop is not None and (not chosen or binlog_index(chosen[-1].name)[1] < stop):
        warnings.append(
            f"binary log {target.position[0]} is not in the point: restored to its last change"
        )
    return chosen, warnings


def restore_datadir(
    request: RestoreRequest,
    source: RestoreSource,
    settings: ConnectionSettings | None,
    ctx: PluginContext,
) -> RestoreResult:
    """Restore the whole server into ``request.target`` (see the module docstring).

    ``settings`` (the endpoint's account, which the restored server knows too) are
    needed to replay binary logs.
    """
    target = request.target
    if target is None or request.in_place:
        raise PluginError(
            "a MariaDB restore needs a target folder: the new data directory (restoring over a "
            "running server's data directory is never done)"
        )
    stop, warnings = parse_target(request.options)
    items = {i.path: i for i in source.items()}
    if CHAIN_PATH not in items:
        raise PluginError(f"recovery point {source.recovery_point_id} holds no MariaDB backup")
    chain = Chain.from_item(items[CHAIN_PATH])
    backups = choose_backups(chain.physical, stop)
    binlogs, more = choose_binlogs(chain, backups[-1], stop)
    warnings += more
    if binlogs and settings is None:
        raise PluginError(
            "replaying binary logs needs the endpoint's account, and this point's endpoint is gone"
        )
    force = bool(request.options.get("force")) or request.overwrite == "always"
    _empty_target(target, force, ctx)
    result = RestoreResult(warnings=warnings)
    work = Path(tempfile.mkdtemp(prefix=".tapir-mariadb-", dir=target.parent))
    try:
        for n, backup in enumerate(backups):
            _extract(source, items[backup.path.encode()], work / f"{n:04d}", ctx, result)
        base = work / "0000"
        ctx.progress.advance(current="mariadb-backup --prepare")
        run_tool(tool("mariadb-backup", None, "--prepare", f"--target-dir={base}"), "prepare")
        for n in range(1, len(backups)):
            run_tool(
                tool(
                    "mariadb-backup",
                    None,
                    "--prepare",
                    f"--target-dir={base}",
                    f"--incremental-dir={work / f'{n:04d}'}",
                ),
                f"applying incremental {n}",
            )
        run_tool(
            tool(
                "mariadb-backup", None, "--move-back", f"--target-dir={base}", f"--datadir={target}"
            ),
            "moving the prepared backup into the target",
        )
        owner = _own(target)
        if binlogs:
            logs = work / "binlog"
            logs.mkdir()
            for b in binlogs:
                result.bytes_restored += _copy_out(
                    source, items[b.path.encode()], logs / b.name, ctx
                )
            assert settings is not None
            _replay(
                target, owner, backups[-1], [logs / b.name for b in binlogs], stop, settings, ctx
            )
        result.items_restored = len(backups) + len(binlogs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for w in result.warnings:
        ctx.logger.warning("%s", w)
    return result


def _empty_target(target: Path, force: bool, ctx: PluginContext) -> None:
    if target.exists() and not target.is_dir():
        raise PluginError(f"restore target {target} is not a folder")
    if target.exists() and any(target.iterdir()):
        if not force:
            raise PluginError(
                f"restore target {target} is not empty; choose an empty folder or set the "
                "restore option force=true to delete what it holds"
            )
        ctx.audit("restore.overwrite", str(target))
        for entry in target.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    target.mkdir(parents=True, exist_ok=True)


def _extract(
    source: RestoreSource, item: Item, into: Path, ctx: PluginContext, result: RestoreResult
) -> None:
    into.mkdir()
    ctx.progress.advance(current=f"extracting {item.path.decode()}")
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(
            ["mbstream", "-x", "-C", str(into)], stdin=subprocess.PIPE, stderr=errors
        )
        assert proc.stdin is not None
        try:
            with source.open(item) as data:
                while block := data.read(BLOCK):
                    proc.stdin.write(block)
                    result.bytes_restored += len(block)
                    ctx.progress.advance(bytes_done=len(block))
                    ctx.check_canceled()
            proc.stdin.close()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        if proc.wait() != 0:
            errors.seek(0)
            raise PluginError(
                f"mbstream could not extract {item.path.decode()}: {tail(errors.read())}"
            )


def _copy_out(source: RestoreSource, item: Item, to: Path, ctx: PluginContext) -> int:
    done = 0
    with source.open(item) as data, to.open("wb") as out:
        while block := data.read(BLOCK):
            out.write(block)
            done += len(block)
            ctx.progress.advance(bytes_done=len(block))
            ctx.check_canceled()
    return done


def _own(target: Path) -> str:
    """The user the restored server runs as: the owner of the target folder."""
    st = target.stat()
    if os.geteuid() == 0:
        for root, dirs, files in os.walk(target):
            for name in [*dirs, *files]:
                os.lchown(os.path.join(root, name), st.st_uid, st.st_gid)
    try:
        return pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        return str(st.st_uid)


def _replay(
    datadir: Path,
    owner: str,
    base: Physical,
    logs: list[Path],
    stop: Target,
    settings: ConnectionSettings,
    ctx: PluginContext,
) -> None:
    rundir = Path(tempfile.mkdtemp(prefix="tapir-mdb-"))  # short: a socket path has 107 bytes
    try:
        st = datadir.stat()
        if os.geteuid() == 0:
            os.chown(rundir, st.st_uid, st.st_gid)
        sock = rundir / "mysqld.sock"
        server = _start_server(datadir, rundir, sock, owner)
        try:
            local = ConnectionSettings(settings.user, settings.password, socket=str(sock))
            _pipe_binlogs(base, logs, stop, local, ctx)
        finally:
            server.terminate()
            server.wait()
    finally:
        shutil.rmtree(rundir, ignore_errors=True)


def _start_server(datadir: Path, rundir: Path, sock: Path, owner: str) -> subprocess.Popen:
    log = rundir / "server.log"
    argv = [
        "mariadbd",
        "--no-defaults",
        f"--datadir={datadir}",
        f"--socket={sock}",
        "--skip-networking",
        f"--pid-file={rundir / 'mysqld.pid'}",
        f"--log-error={log}",
        f"--user={owner}",
    ]
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except FileNotFoundError:
        raise PluginError("mariadbd is not installed (Debian package mariadb-server)") from None
    deadline = time.monotonic() + SERVER_START_WAIT
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            text = log.read_text(errors="replace") if log.exists() else ""
            raise PluginError(f"the restored server did not start: {tail(text)}")
        time.sleep(0.1)
    return proc


def _pipe_binlogs(
    base: Physical, logs: list[Path], stop: Target, local: ConnectionSettings, ctx: PluginContext
) -> None:
    args = []
    if logs[0].name == base.binlog_file:
        args.append(f"--start-position={base.binlog_pos}")
    if stop.epoch is not None:
        args.append(
            "--stop-datetime="
            + dt.datetime.fromtimestamp(stop.epoch, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        )
    elif stop.position is not None:
        args.append(f"--stop-position={stop.position[1]}")
    ctx.progress.advance(current=f"replaying {len(logs)} binary log(s)")
    try:
        connect(local).close()
    except ConnectionFailed as exc:
        raise PluginError(
            f"the restored server refused the endpoint's account {local.user!r} ({exc}); it "
            "must have existed, with the same password, when the backup was taken"
        ) from None
    with option_file(local) as cnf, tempfile.TemporaryFile() as e1, tempfile.TemporaryFile() as e2:
        reader = subprocess.Popen(
            tool("mariadb-binlog", None, *args, *map(str, logs)),
            stdout=subprocess.PIPE,
            stderr=e1,
            env={**os.environ, "TZ": "UTC"},  # --stop-datetime is read in this zone
        )
        client = subprocess.Popen(
            tool("mariadb", cnf, "--binary-mode"), stdin=reader.stdout, stderr=e2
        )
        assert reader.stdout is not None
        reader.stdout.close()
        client_code = client.wait()
        reader_code = reader.wait()
        for code, errors, what in (
            (reader_code, e1, "mariadb-binlog"),
            (client_code, e2, "mariadb"),
        ):
            if code != 0:
                errors.seek(0)
                raise PluginError(f"binary log replay failed ({what}): {tail(errors.read())}")
