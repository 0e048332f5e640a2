"""The progress display: a bar on a terminal, periodic plain lines elsewhere."""

from __future__ import annotations

import io
import time

from rich.console import Console

from tapir.appliance.cli.progress import ProgressDisplay, snapshot_line
from tapir.appliance.engine.service import ProgressSnapshot


def snap(done: int, total: int | None = 4 * 1024**2, current: str | None = "etc/hosts"):
    return ProgressSnapshot(
        run_id=1,
        phase="backup",
        bytes_done=done,
        bytes_total=total,
        items_done=done // 1024,
        items_total=None,
        current=current,
        elapsed=2.0,
        rate=1024**2,
    )


def test_plain_line_has_bytes_rate_eta_and_item() -> None:
    line = snapshot_line(snap(1024**2))
    assert line == (
        "backup: 1.0 MiB / 4.0 MiB (25%), 1024 items, 1.0 MiB/s, elapsed 2s, ETA 3s, etc/hosts"
    )


def test_plain_line_without_total_has_no_eta() -> None:
    line = snapshot_line(snap(2048, total=None, current=None))
    assert line == "backup: 2.0 KiB, 2 items, 1.0 MiB/s, elapsed 2s, ETA -"


def test_not_a_terminal_prints_periodic_lines_and_the_totals() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False)
    with ProgressDisplay(console, interval=0.05) as show:
        assert not show.live
        show(snap(1))
        show(snap(2))  # within the interval: not printed
        time.sleep(0.06)
        show(snap(1024**2))
        show(snap(4 * 1024**2))
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("backup: 1 B / 4.0 MiB")
    assert lines[1].startswith("backup: 1.0 MiB / 4.0 MiB (25%)")
    assert lines[-1].startswith("backup: 4.0 MiB / 4.0 MiB (100%)")
    assert len(lines) == 3
    assert "\x1b" not in out.getvalue()


def test_terminal_shows_a_bar_with_rate_and_eta() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=150)
    with ProgressDisplay(console, label="nightly") as show:
        assert show.live
        show(snap(1024**2))
    text = out.getvalue()
    assert "nightly" in text
    assert "1.0 MiB/4.0 MiB" in text
    assert "1.0 MiB/s" in text
    assert "ETA 3s" in text
    assert "etc/hosts" in text
