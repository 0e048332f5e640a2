"""Aggregation and rendering surface failures instead of hiding them."""

from __future__ import annotations

import report
import run

MB = 10**6


def _round(restic_restore: float, tapir_verify: str, tapir_error: str | None = None) -> dict:
    tapir: dict = {"description": "tapir", "cache_dropped": [True, True, True]}
    if tapir_error:
        tapir["error"] = tapir_error
    else:
        tapir |= {
            "backup": {"seconds": 1.0, "mb_per_s": 100.0, "peak_rss": 50 * 2**20},
            "backup2": {"seconds": 0.5, "mb_per_s": 200.0, "peak_rss": 50 * 2**20},
            "restore": {"seconds": 1.0, "mb_per_s": 100.0, "peak_rss": 40 * 2**20},
            "repo_after_backup": 80 * MB,
            "repo_after_backup2": 90 * MB,
            "bytes_added": 10 * MB,
            "cache_size": MB,
            "verify": tapir_verify,
        }
    restic = {
        "description": "restic",
        "cache_dropped": [True, True, False],
        "backup": {"seconds": 2.0, "mb_per_s": 50.0, "peak_rss": 90 * 2**20},
        "backup2": {"seconds": 0.4, "mb_per_s": 250.0, "peak_rss": 90 * 2**20},
        "restore": {"seconds": restic_restore, "mb_per_s": 1.0, "peak_rss": 70 * 2**20},
        "repo_after_backup": 80 * MB,
        "repo_after_backup2": 85 * MB,
        "bytes_added": 5 * MB,
        "cache_size": MB,
        "verify": "identical",
    }
    return {
        "results": {"tapir": tapir, "restic": restic},
        "day1_tree": {"files": 3, "apparent": 100 * MB, "allocated": 100 * MB},
        "day2_tree": {"files": 3, "apparent": 100 * MB, "allocated": 100 * MB},
        "mutation": {"bytes_written": 1},
    }


def _record(rounds: list[dict]) -> dict:
    return {
        "date": "today",
        "seed": 1,
        "scale": 0.5,
        "repeat": len(rounds),
        "command": "run.py",
        "machine": {"cpu": "test"},
        "versions": {"restic": "x"},
        "dataset": {"parts": {"image": {"files": 1, "bytes": 10}}},
        "day1_tree": rounds[0]["day1_tree"],
        "mutation": rounds[0]["mutation"],
        "results": run.aggregate(rounds),
        "drop_caches_permitted": False,
    }


def test_medians_and_ranges_come_from_every_round() -> None:
    summary = run.aggregate([_round(r, "identical") for r in (3.0, 1.0, 2.0)])
    restore = summary["restic"]["restore"]
    assert (restore["seconds"], restore["min_seconds"], restore["max_seconds"]) == (2.0, 1.0, 3.0)
    assert restore["mb_per_s"] == 50.0  # 100 MB over the median 2 s, not a mean of rates
    text = report.render_table(_record([_round(r, "identical") for r in (3.0, 1.0, 2.0)]))
    assert "2.0 s (1.0-3.0)" in text


def test_a_differing_restore_in_any_round_is_shown() -> None:
    rounds = [_round(2.0, "identical"), _round(2.0, "1 changed: image/disk.img")]
    record = _record(rounds)
    assert record["results"]["tapir"]["verify"] == "1 changed: image/disk.img"
    assert "**DIFFERS** 1 changed: image/disk.img" in report.render_table(record)
    doc = report.render([record])
    assert "**no** (not permitted)" in doc  # one cache drop was refused


def test_a_failed_tool_is_reported_not_dropped() -> None:
    record = _record([_round(2.0, "identical", tapir_error="backup: exit code 1")])
    table = report.render_table(record)
    assert "**FAILED** backup: exit code 1" in table
    # No targets are judged from a failed run.
    assert report.render_targets(record) == ""


def test_targets_compare_against_restic() -> None:
    record = _record([_round(2.0, "identical")])
    targets = report.render_targets(record)
    assert "| tapir | first backup >= 1.5x restic MB/s | 100.0 vs 50.0 | yes |" in targets
    assert "| tapir | second backup no slower than restic | 0.5 vs 0.4 | **no** |" in targets
    assert "repository within 5 % of restic" in targets
