"""Fixtures: a real tgt tape library, an appliance home with its changer and drives
registered, and the ``tapir`` command line run in-process against that home."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trees
from click.testing import CliRunner, Result
from trees import tree as tree  # re-exported for the tests here

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vtl import Cartridge, VirtualLibrary, start_library

from tapir.appliance.cli.main import build_cli
from tapir.appliance.config import load_settings
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_manager import load_plugins

#: Data cartridges in slots 1-4, a WORM cartridge (LTO-8 WORM barcode) in slot 5, a
#: spare in slot 6, two 2 MB cartridges that reach early warning fast (slots 7, 8), a
#: cleaning cartridge in slot 12 and one in mail slot 1.
CARTRIDGES = [
    *[Cartridge(f"TAP00{i}L8", slot=i, size_mb=16) for i in range(1, 5)],
    Cartridge("WRM001LY", slot=5, size_mb=16, kind="worm"),
    Cartridge("SPR001L8", slot=6, size_mb=16),
    *[Cartridge(f"SML00{i}L8", slot=6 + i, size_mb=2) for i in range(1, 3)],
    Cartridge("CLN001L1", slot=12, size_mb=1, kind="clean"),
    Cartridge("NEW001L8", mail_slot=1, size_mb=16),
]


@pytest.fixture
def vtl(tmp_path: Path) -> Iterator[VirtualLibrary]:
    """The tgt library with the cartridges above."""
    lib, stop = start_library(tmp_path / "vtl", cartridges=CARTRIDGES)
    try:
        yield lib
    finally:
        stop()


Tapir = Callable[..., Result]


def make_tapir(home: Path) -> Tapir:
    """``tapir(*args, code=0)``: run the command line on ``home``; checks the exit code."""
    registry = load_plugins()
    cli = build_cli(registry)

    def run(*args: str, code: int | None = 0) -> Result:
        result = CliRunner().invoke(cli, ["--home", str(home), *args], catch_exceptions=False)
        if code is not None and result.exit_code != code:
            raise AssertionError(
                f"tapir {' '.join(args)} exited {result.exit_code}, not {code}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}"
            )
        return result

    return run


def register_library(home: Path, vtl: VirtualLibrary) -> Appliance:
    """Initialise the appliance in ``home`` and register lib1, lib1-d0, lib1-d1."""
    app = Appliance.open(load_settings(home))
    app.initialize()
    app.register_device("lib1", "changer", vtl.changer_url)
    for number, url in enumerate(vtl.drive_urls):
        app.register_device(f"lib1-d{number}", "drive", url, changer="lib1", drive_number=number)
    return app


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """The appliance's home folder."""
    return tmp_path / "home"


@pytest.fixture
def app(home: Path, vtl: VirtualLibrary) -> Iterator[Appliance]:
    """An initialised appliance with changer lib1 and drives lib1-d0, lib1-d1 registered."""
    appliance = register_library(home, vtl)
    yield appliance
    appliance.close()


@pytest.fixture
def tapir(app: Appliance, home: Path) -> Tapir:
    """The command line on the appliance's home."""
    return make_tapir(home)


def as_json(result: Result) -> Any:
    """A command's JSON output."""
    return json.loads(result.stdout)


def volumes(tapir: Tapir, *args: str) -> dict[str, dict[str, Any]]:
    """``tapir tape volumes --json`` by barcode."""
    return {v["barcode"]: v for v in as_json(tapir("tape", "volumes", "--json", *args))}


def make_tape_pool(
    tapir: Tapir,
    name: str,
    *options: str,
    drives: tuple[str, ...] = ("lib1-d0", "lib1-d1"),
    encrypt: bool = False,
) -> None:
    """A tape pool on lib1 with 64 KiB blocks, ``drives`` and ``options`` (KEY=VALUE)."""
    args = ["--option", "changer=lib1", "--option", "block_size=65536"]
    for option in (*(f"drives={d}" for d in drives), *options):
        args += ["--option", option]
    if encrypt:
        args.append("--encrypt")
    tapir("pool", "create", name, "--media", "tape", *args)


def make_tree(root: Path, size: int, seed: int = 0) -> Path:
    """A source tree (see tests/trees.py) with a smaller text file, for small cartridges."""
    return trees.make_tree(root, size, seed, text_repeat=2000)
