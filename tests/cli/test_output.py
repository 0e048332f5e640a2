"""Formatting and option parsing: what an operator reads and what a script parses."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from tapir.appliance.cli.options import parse_options
from tapir.appliance.cli.output import (
    dumps,
    format_bytes,
    format_duration,
    format_rate,
    format_ratio,
    print_table,
)
from tapir.appliance.plugin_api import OptionSpec


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (None, "-"),
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (5 * 1024**3, "5.0 GiB"),
        (3 * 1024**7, "3072.0 EiB"),
        (-2048, "-2.0 KiB"),
    ],
)
def test_format_bytes(n: int | None, text: str) -> None:
    assert format_bytes(n) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0, "0s"),
        (59.4, "59s"),
        (61, "1m01s"),
        (3600 * 2 + 420, "2h07m"),
        (86400 * 3 + 3600 * 4, "3d04h"),
        (-5, "0s"),
    ],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


def test_format_rate_and_ratio() -> None:
    assert format_rate(None) == "-"
    assert format_rate(0) == "-"
    assert format_rate(10 * 1024**2) == "10.0 MiB/s"
    assert format_ratio(3.2) == "3.20x"
    assert format_ratio(None) == "-"


def test_json_is_stable_and_encodes_times_and_bytes() -> None:
    when = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    text = dumps({"b": 1, "a": when, "path": b"caf\xc3\xa9/x\xff"})
    data = json.loads(text)
    assert list(data) == ["a", "b", "path"]
    assert data["a"] == "2024-05-01T12:00:00+00:00"
    assert data["path"].startswith("café/x")


def test_json_refuses_unknown_types() -> None:
    with pytest.raises(TypeError, match="cannot encode object"):
        dumps({"x": object()})


def test_options_are_typed_by_the_plugin_declaration() -> None:
    specs = [
        OptionSpec("threads", "int"),
        OptionSpec("one_fs", "bool"),
        OptionSpec("tags", "list[str]"),
        OptionSpec("mode", "choice", choices=("fast", "safe")),
    ]
    opts = parse_options(
        ["threads=4", "one_fs=yes", "tags=a", "tags=b=c", "mode=safe", "other=x=y"], specs
    )
    assert opts == {
        "threads": 4,
        "one_fs": True,
        "tags": ["a", "b=c"],
        "mode": "safe",
        "other": "x=y",
    }


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ("threads=four", "option threads expects a whole number, got 'four'"),
        ("one_fs=maybe", "option one_fs expects yes or no"),
        ("mode=turbo", "option mode expects one of fast, safe"),
        ("novalue", "--option expects key=value, got 'novalue'"),
        ("=x", "--option expects key=value"),
    ],
)
def test_bad_options_are_refused(pair: str, message: str) -> None:
    specs = [
        OptionSpec("threads", "int"),
        OptionSpec("one_fs", "bool"),
        OptionSpec("mode", "choice", choices=("fast", "safe")),
    ]
    with pytest.raises(ValueError, match=message):
        parse_options([pair], specs)


def test_empty_table_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    print_table(["a"], [], empty="no pools")
    assert capsys.readouterr().out.strip() == "(no pools)"


def test_table_shows_cells_and_dashes_for_none(capsys: pytest.CaptureFixture[str]) -> None:
    print_table(["name", "size"], [["alpha", None], ["beta", "3 B"]], right=["size"])
    out = capsys.readouterr().out
    assert "alpha" in out and "beta" in out and "3 B" in out
    assert out.splitlines()[2].rstrip().endswith("-")
