"""Log backups: new WAL segments received with ``pg_receivewal`` through a slot.

Each log run switches the server to a new segment (so everything committed up to
now is in complete segments), receives up to that boundary into a staging folder
in the plugin's state folder, checks that the segments continue the parent's
without a hole, and stores a point holding the parent's base backup and WAL by
reference plus the new segments. The replication slot makes the server keep WAL
Tapir has not received yet, so nothing is lost between runs; a segment lost
anyway (slot dropped, staging folder damaged) is a WAL gap, reported here and
not at restore time.
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

from tapir.appliance.plugin_api import BackupSink, Item, ItemKind, PluginContext, PluginError

from .chain import BASE_PATH, CHAIN_PATH, Chain, wal_path
from .connection import bindir, connect, tool_env, tool_error
from .options import ConnectionSettings
from .slots import ensure_slot
from .wal import (
    SEGMENT_NAME,
    describe_gap,
    format_lsn,
    parse_lsn,
    parse_segment,
    segment_boundary_at_or_after,
    segment_name,
    segment_number,
)


class WalGap(PluginError):
    """Segments the chain needs can no longer be had: PITR past them is impossible."""


def staging_dir(ctx: PluginContext, system_identifier: str) -> Path:
    if ctx.state_dir is None:
        raise PluginError("log backups need the plugin's state folder (none in this context)")
    path = Path(ctx.state_dir) / "wal" / system_identifier
    path.mkdir(parents=True, exist_ok=True)
    return path


def first_needed(chain: Chain) -> int:
    """The segment number a log backup must store next."""
    if chain.wal:
        return parse_segment(chain.wal[-1], chain.segment_size)[1] + 1
    # The base tar holds WAL up to the stop position; replay beyond it needs that
    # segment complete (pg_backup_stop switched it out).
    return segment_number(chain.stop_lsn, chain.segment_size)


def _prune_staging(staging: Path, chain: Chain) -> None:
    """Forget segments a committed point (the parent) holds, keeping its last.

    pg_receivewal resumes after the newest segment in the folder, so one stays;
    with none, it starts at the replication slot's position.
    """
    keep_from = first_needed(chain) - 1
    for path in staging.iterdir():
        name = path.name.removesuffix(".partial")
        if SEGMENT_NAME.match(name):
            timeline, number = parse_segment(name, chain.segment_size)
            # Older timelines and segments before the chain (left from an earlier
            # chain, e.g. before a WAL gap) would make pg_receivewal resume there.
            if timeline != chain.timeline or number < keep_from:
                path.unlink()


def _receive(settings: ConnectionSettings, staging: Path, end_lsn: int, expected: str) -> None:
    done = subprocess.run(
        [
            str(bindir() / "pg_receivewal"),
            "--directory",
            str(staging),
            "--slot",
            settings.slot,
            "--no-loop",
            "--endpos",
            format_lsn(end_lsn),
        ],
        env=tool_env(settings),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        if "has already been removed" in done.stderr:
            raise WalGap(
                f"WAL gap on {settings.address}: the server removed WAL from segment {expected} "
                "on before Tapir received it (was the replication slot "
                f"{settings.slot!r} dropped?); point-in-time recovery past it is impossible: "
                "take a full backup"
            )
        raise tool_error(settings, "pg_receivewal", done.stderr)


def log_backup(
    settings: ConnectionSettings, sink: BackupSink, ctx: PluginContext
) -> tuple[Chain, dict[str, object]]:
    """Store the WAL written since the parent point; returns the new chain and metadata."""
    if sink.parent is None:
        raise PluginError("a log backup needs a previous full backup of this cluster")
    parent = sink.parent
    chain = Chain.from_item(parent.lookup(CHAIN_PATH))
    staging = staging_dir(ctx, chain.system_identifier)
    _prune_staging(staging, chain)
    expected = first_needed(chain)
    expected_name = segment_name(chain.timeline, expected, chain.segment_size)
    with connect(settings) as conn:
        sysid = conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()
        if sysid is None or str(sysid[0]) != chain.system_identifier:
            raise PluginError(
                f"{settings.address} is another cluster than the one of the parent point "
                "(system identifier changed); take a full backup"
            )
        restart = ensure_slot(conn, settings.slot, ctx)
        row = conn.execute(
            "SELECT pg_switch_wal(), now(), timeline_id FROM pg_control_checkpoint()"
        )
        switched = row.fetchone()
        # pg_receivewal stops only once it sees WAL past --endpos: a committed
        # transaction id puts a record into the new segment at once (instead of
        # waiting for the server's next periodic record).
        conn.execute("SELECT txid_current()")
    assert switched is not None
    switch_lsn, switched_at, timeline = parse_lsn(str(switched[0])), switched[1], int(switched[2])
    if timeline != chain.timeline:
        raise PluginError(
            f"{settings.address} moved to timeline {timeline} (the chain is on "
            f"{chain.timeline}, e.g. after a promotion); take a full backup"
        )
    end_lsn = segment_boundary_at_or_after(switch_lsn, chain.segment_size)
    last = segment_number(end_lsn, chain.segment_size) - 1  # the last complete segment
    if restart is not None and segment_number(restart, chain.segment_size) > expected:
        have = {p.name for p in staging.iterdir()}
        if expected_name not in have:
            raise WalGap(
                f"WAL gap on {settings.address}: segments from {expected_name} on are gone "
                f"(the replication slot {settings.slot!r} starts at {format_lsn(restart)}); "
                "point-in-time recovery past them is impossible: take a full backup"
            )
    if last >= expected:
        ctx.progress.advance(current=f"receiving WAL up to {format_lsn(end_lsn)}")
        _receive(settings, staging, end_lsn, expected_name)
    missing = [
        n
        for n in range(expected, last + 1)
        if not (staging / segment_name(chain.timeline, n, chain.segment_size)).is_file()
    ]
    if missing:
        raise WalGap(
            f"WAL gap on {settings.address}: missing "
            f"{describe_gap(chain.timeline, missing, chain.segment_size)}; point-in-time "
            "recovery past it is impossible: take a full backup"
        )
    # The parent's data by reference: every point restores on its own.
    for path in (BASE_PATH, *(wal_path(s) for s in chain.wal)):
        item = parent.lookup(path)
        if item is None:
            raise PluginError(f"the parent point lacks {path.decode()}; take a full backup")
        sink.add(item)
    new = []
    for number in range(expected, last + 1):
        name = segment_name(chain.timeline, number, chain.segment_size)
        _store_segment(sink, staging / name, name, ctx)
        new.append(name)
    chain.wal = [*chain.wal, *new]
    chain.wal_end_lsn = max(chain.wal_end_lsn, end_lsn)
    chain.recoverable_until = switched_at.astimezone(UTC).isoformat()
    metadata: dict[str, object] = {
        "type": "wal",
        "start_lsn": format_lsn(chain.start_lsn),
        "stop_lsn": format_lsn(chain.stop_lsn),
        "timeline": chain.timeline,
        "wal_first": chain.wal[0] if chain.wal else None,
        "wal_last": chain.wal[-1] if chain.wal else None,
        "wal_new": len(new),
        "wal_end_lsn": format_lsn(chain.wal_end_lsn),
    }
    return chain, metadata


def _store_segment(sink: BackupSink, path: Path, name: str, ctx: PluginContext) -> None:
    stat = path.stat()
    with path.open("rb") as src:
        writer = sink.open_file(
            Item(
                path=wal_path(name),
                kind=ItemKind.FILE,
                mode=0o600,
                size=stat.st_size,
                mtime_ns=stat.st_mtime_ns,
            )
        )
        while block := src.read(1 << 20):
            writer.write(block)
        writer.close()
    ctx.check_canceled()


def now_iso() -> str:
    return datetime.now(UTC).isoformat()
