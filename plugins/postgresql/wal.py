"""WAL positions and segment file names (timeline, log id, segment number).

A segment is named ``TTTTTTTTXXXXXXXXYYYYYYYY``: timeline, then the segment
number split in "log" (high) and "seg" (low) parts of 0x100000000 / size each.
"""

from __future__ import annotations

import re

SEGMENT_NAME = re.compile(r"^[0-9A-F]{24}$")


def parse_lsn(text: str) -> int:
    """``16/B374D848`` -> byte position."""
    high, _, low = text.strip().partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def segment_number(lsn: int, segment_size: int) -> int:
    """The segment holding byte ``lsn``."""
    return lsn // segment_size


def segment_name(timeline: int, number: int, segment_size: int) -> str:
    per_log = 0x100000000 // segment_size
    return f"{timeline:08X}{number // per_log:08X}{number % per_log:08X}"


def parse_segment(name: str, segment_size: int) -> tuple[int, int]:
    """(timeline, segment number) of a segment file name."""
    if not SEGMENT_NAME.match(name):
        raise ValueError(f"{name!r} is not a WAL segment name")
    per_log = 0x100000000 // segment_size
    return int(name[:8], 16), int(name[8:16], 16) * per_log + int(name[16:], 16)


def segment_boundary_at_or_after(lsn: int, segment_size: int) -> int:
    """The first segment start at or after ``lsn``."""
    return -(-lsn // segment_size) * segment_size


def describe_gap(timeline: int, numbers: list[int], segment_size: int) -> str:
    """``A`` or ``A .. B (n segments)`` for a run of missing segment numbers."""
    first = segment_name(timeline, numbers[0], segment_size)
    if len(numbers) == 1:
        return first
    last = segment_name(timeline, numbers[-1], segment_size)
    return f"{first} .. {last} ({len(numbers)} segments)"
