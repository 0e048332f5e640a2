"""WAL positions, segment names and the backup label parser (pure functions)."""

from __future__ import annotations

import io
import tarfile

import pytest

from tapir.plugins.postgresql.basebackup import parse_label
from tapir.plugins.postgresql.options import parse_address
from tapir.plugins.postgresql.wal import (
    describe_gap,
    format_lsn,
    parse_lsn,
    parse_segment,
    segment_boundary_at_or_after,
    segment_name,
    segment_number,
)

MiB16 = 16 * 1024 * 1024


def test_lsn_round_trip_and_segments() -> None:
    lsn = parse_lsn("16/B374D848")
    assert lsn == (0x16 << 32) | 0xB374D848 and format_lsn(lsn) == "16/B374D848"
    number = segment_number(lsn, MiB16)
    # 256 segments of 16 MiB per "log" id: the name splits the number there.
    assert segment_name(1, number, MiB16) == "0000000100000016000000B3"
    assert parse_segment("0000000100000016000000B3", MiB16) == (1, number)
    assert segment_boundary_at_or_after(parse_lsn("0/3001D88"), MiB16) == parse_lsn("0/4000000")
    assert segment_boundary_at_or_after(parse_lsn("0/4000000"), MiB16) == parse_lsn("0/4000000")
    # Other segment sizes (initdb --wal-segsize) change the split.
    assert segment_name(2, 0x140, 64 * 1024 * 1024) == "000000020000000500000000"
    with pytest.raises(ValueError):
        parse_segment("000000010000000000000003.partial", MiB16)


def test_gaps_are_named() -> None:
    assert describe_gap(1, [7], MiB16) == "000000010000000000000007"
    assert describe_gap(1, [7, 8, 9], MiB16) == (
        "000000010000000000000007 .. 000000010000000000000009 (3 segments)"
    )


def test_backup_label_from_the_first_tar_member() -> None:
    label = b"START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nLABEL: tapir db1\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("backup_label")
        info.size = len(label)
        tar.addfile(info, io.BytesIO(label))
    parsed = parse_label(buf.getvalue())
    assert parsed["LABEL"] == "tapir db1"
    assert parsed["START WAL LOCATION"].startswith("0/2000028")
    assert parse_label(b"not a tar") == {}


def test_addresses() -> None:
    assert parse_address("db1") == ("db1", 5432)
    assert parse_address("db1:6432") == ("db1", 6432)
    assert parse_address("[::1]:5433") == ("::1", 5433)
    with pytest.raises(ValueError, match="not a TCP port"):
        parse_address("db1:http")
