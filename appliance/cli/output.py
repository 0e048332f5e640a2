"""How the command line prints: rich tables for people, JSON with stable keys for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def stdout_console() -> Console:
    """A console on the current stdout (looked up each time: CliRunner swaps it).

    Off a terminal, tables are not wrapped to 80 columns: a line per row is what
    ``grep`` and ``less`` want.
    """
    width = None if sys.stdout.isatty() else 100_000
    return Console(file=sys.stdout, highlight=False, soft_wrap=True, width=width)


def stderr_console() -> Console:
    """A console on the current stderr, for warnings and progress."""
    return Console(file=sys.stderr, highlight=False, soft_wrap=True)


def format_bytes(n: int | float | None) -> str:
    """Binary units with one decimal (``1.5 GiB``); ``-`` for unknown."""
    if n is None:
        return "-"
    value = float(n)
    sign = "-" if value < 0 else ""
    value = abs(value)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            return f"{sign}{int(value)} {unit}" if unit == "B" else f"{sign}{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_rate(bytes_per_second: float | None) -> str:
    """A transfer rate such as ``12.3 MiB/s``; ``-`` when unknown or zero."""
    if not bytes_per_second or bytes_per_second <= 0:
        return "-"
    return f"{format_bytes(bytes_per_second)}/s"


def format_duration(seconds: float | None) -> str:
    """``45s``, ``3m05s``, ``2h07m``, ``3d04h``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h}h{m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d{h:02d}h"


def format_time(value: datetime | None) -> str:
    """A timestamp in the local zone, to the second; ``-`` when absent."""
    if value is None:
        return "-"
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def format_ratio(value: float | None) -> str:
    """A dedup ratio such as ``3.20x``."""
    if value is None:
        return "-"
    return f"{value:.2f}x"


def json_default(value: Any) -> Any:
    """Encode what json cannot: times as ISO 8601 UTC, bytes as text, paths, sets."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape").encode("utf-8", "replace").decode()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def dumps(data: Any) -> str:
    """JSON text with sorted keys so that scripts and diffs see a stable shape."""
    return json.dumps(data, default=json_default, indent=2, sort_keys=True, ensure_ascii=False)


def print_json(data: Any) -> None:
    """Write ``data`` as JSON to stdout (plain write: no rich markup or wrapping)."""
    sys.stdout.write(dumps(data) + "\n")


def print_table(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    title: str | None = None,
    right: Iterable[str] = (),
    empty: str = "nothing to show",
) -> None:
    """Print rows as a rich table; ``right`` names the columns aligned right (numbers)."""
    rows = list(rows)
    console = stdout_console()
    if not rows:
        console.print(f"({empty})")
        return
    right_set = set(right)
    table = Table(title=title, show_edge=False, header_style="bold", pad_edge=False)
    for col in columns:
        table.add_column(col, justify="right" if col in right_set else "left", overflow="fold")
    for row in rows:
        table.add_row(*("-" if cell is None else str(cell) for cell in row))
    console.print(table)


def print_fields(fields: Mapping[str, Any], title: str | None = None) -> None:
    """Print one record as aligned ``key: value`` lines."""
    console = stdout_console()
    if title:
        console.print(f"[bold]{title}[/bold]")
    width = max((len(k) for k in fields), default=0)
    for key, value in fields.items():
        console.print(f"{key + ':':<{width + 1}} {'-' if value is None else value}", markup=False)
