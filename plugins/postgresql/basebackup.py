"""Full backups: ``pg_basebackup`` streamed as one tar straight into the sink.

``-D - -Ft -X fetch`` writes the cluster as a single tar on stdout, the WAL
from the backup's start to its end included (so a full restores on its own);
nothing lands on the appliance's disk, and content-defined chunking deduplicates
unchanged files between fulls. ``pg_basebackup`` speaks the replication protocol
(BASE_BACKUP) and knows every version's details (manifests, checksum checks);
re-implementing it would gain nothing. Its limit: one tablespace (stdout holds
one tar), which the plugin checks before it starts.
"""

from __future__ import annotations

import re
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO

import psycopg

from tapir.appliance.plugin_api import (
    BackupSink,
    FileWriter,
    Item,
    ItemKind,
    PluginContext,
    PluginError,
)

from .chain import BASE_PATH, Chain
from .connection import bindir, connect, tool_env, tool_error
from .inventory import Cluster
from .options import ConnectionSettings
from .slots import ensure_slot, segment_size
from .wal import parse_lsn

BLOCK = 1 << 20
_START = re.compile(r"write-ahead log start point: ([0-9A-F]+/[0-9A-F]+) on timeline (\d+)")
_END = re.compile(r"write-ahead log end point: ([0-9A-F]+/[0-9A-F]+)")


def parse_label(head: bytes) -> dict[str, str]:
    """The backup label, the first member of pg_basebackup's tar (empty if it is not)."""
    if len(head) < tarfile.BLOCKSIZE:
        return {}
    try:
        info = tarfile.TarInfo.frombuf(head[: tarfile.BLOCKSIZE], "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return {}
    if info.name != "backup_label":
        return {}
    text = head[tarfile.BLOCKSIZE : tarfile.BLOCKSIZE + info.size].decode(errors="replace")
    label = {}
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            label[key.strip()] = value.strip()
    return label


def copy_stream(
    src: IO[bytes], writer: FileWriter, ctx: PluginContext, on_head: Callable[[bytes], None]
) -> int:
    """Copy the tar into the sink; the first block goes to ``on_head`` too."""
    total = 0
    first = True
    while True:
        block = src.read(BLOCK)
        if not block:
            return total
        if first:
            on_head(block)
            first = False
        writer.write(block)
        total += len(block)
        ctx.check_canceled()


def full_backup(
    settings: ConnectionSettings, cluster: Cluster, sink: BackupSink, ctx: PluginContext
) -> tuple[Chain, dict[str, object]]:
    """Stream a base backup into ``sink``; returns its chain record and point metadata."""
    if cluster.wal_level == "minimal":
        raise PluginError(
            f"{settings.address}: wal_level is minimal; set wal_level = replica for base backups"
        )
    if cluster.tablespaces:
        raise PluginError(
            f"{settings.address}: tablespaces {', '.join(cluster.tablespaces)} are not supported "
            "yet (pg_basebackup writes one tar per tablespace)"
        )
    with connect(settings) as conn:
        ensure_slot(conn, settings.slot, ctx)
        seg_size = segment_size(conn)
        # The server's clock (commit times are compared with it): a recovery target
        # before this moment lies before the backup's checkpoint.
        started = _server_time(conn)
    label: dict[str, str] = {}
    ctx.progress.set_total(bytes_total=cluster.size or None)
    ctx.progress.advance(current="base backup")
    with tempfile.TemporaryFile(mode="w+") as errors:
        proc = subprocess.Popen(
            [
                str(bindir() / "pg_basebackup"),
                "-D",
                "-",
                "-Ft",
                "-X",
                "fetch",
                "--checkpoint=fast",
                "--verbose",
                "--label",
                f"tapir {settings.endpoint}",
            ],
            env=tool_env(settings),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=errors,
        )
        try:
            assert proc.stdout is not None
            writer = sink.open_file(
                Item(path=BASE_PATH, kind=ItemKind.FILE, mode=0o600, mtime_ns=_now_ns())
            )
            size = copy_stream(
                proc.stdout, writer, ctx, lambda head: label.update(parse_label(head))
            )
            code = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        errors.seek(0)
        stderr = errors.read()
    if code != 0:
        raise tool_error(settings, "pg_basebackup", stderr)
    # Closed only once pg_basebackup said it finished: a torn tar never becomes an item.
    writer.close()
    start = _START.search(stderr)
    end = _END.search(stderr)
    if not start or not end:
        raise PluginError(f"pg_basebackup did not report its WAL positions: {stderr.strip()}")
    with connect(settings) as conn:
        finished = _server_time(conn)
    chain = Chain(
        system_identifier=cluster.system_identifier,
        timeline=int(start.group(2)),
        segment_size=seg_size,
        start_lsn=parse_lsn(start.group(1)),
        stop_lsn=parse_lsn(end.group(1)),
        base_started_at=started,
        base_finished_at=finished,
        wal=[],
        wal_end_lsn=parse_lsn(end.group(1)),
        # The tar's WAL ends at the stop position, whose time is not reported: a
        # full point restores to its end, a moment needs a log point.
        recoverable_until=started,
    )
    metadata: dict[str, object] = {
        "type": "base",
        "start_lsn": start.group(1),
        "stop_lsn": end.group(1),
        "timeline": chain.timeline,
        "backup_label": label,
        "base_bytes": size,
    }
    return chain, metadata


def _server_time(conn: psycopg.Connection) -> str:
    row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    return row[0].astimezone(UTC).isoformat()


def _now_ns() -> int:
    return int(datetime.now(UTC).timestamp() * 1_000_000_000)
