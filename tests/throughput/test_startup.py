"""Start-up: the catalog is checked without Alembic when it is current; exit skips the last gc."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from alembic.script import ScriptDirectory

from tapir.appliance.catalog.database import Catalog
from tapir.appliance.catalog.migrate import (
    VERSIONS,
    alembic_config,
    current,
    head_revision,
    is_at_head,
)


def test_head_revision_agrees_with_alembic(tmp_path: Path) -> None:
    catalog = Catalog(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        script = ScriptDirectory.from_config(alembic_config(catalog.engine))
        assert head_revision() == script.get_current_head()
    finally:
        catalog.dispose()


def test_empty_catalog_is_not_at_head_and_upgrade_brings_it_there(tmp_path: Path) -> None:
    catalog = Catalog(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        assert not is_at_head(catalog.engine)
        catalog.upgrade()
        assert is_at_head(catalog.engine)
        assert current(catalog.engine) == head_revision()
    finally:
        catalog.dispose()


def test_an_older_catalog_is_migrated(tmp_path: Path) -> None:
    catalog = Catalog(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        from alembic import command

        first = sorted(p.name for p in VERSIONS.glob("0*.py"))[0].split("_")[0]
        command.upgrade(alembic_config(catalog.engine), first)
        if head_revision() != first:
            assert not is_at_head(catalog.engine)
        catalog.upgrade()
        assert current(catalog.engine) == head_revision()
    finally:
        catalog.dispose()


def write_script(folder: Path, name: str, revision: str, down: str | None) -> None:
    down_text = "None" if down is None else f'"{down}"'
    (folder / name).write_text(f'revision = "{revision}"\ndown_revision = {down_text}\n')


def test_unusual_scripts_make_the_check_ask_alembic(tmp_path: Path) -> None:
    write_script(tmp_path, "a.py", "a", None)
    write_script(tmp_path, "b.py", "b", "a")
    (tmp_path / "__init__.py").write_text("")
    assert head_revision(tmp_path) == "b"
    write_script(tmp_path, "c.py", "c", "a")  # two heads
    assert head_revision(tmp_path) is None
    (tmp_path / "c.py").unlink()
    (tmp_path / "d.py").write_text("revision = compute()\ndown_revision = 'b'\n")
    assert head_revision(tmp_path) is None  # not a plain string
    (tmp_path / "d.py").write_text('revision = "d"\ndown_revision = ("a", "b")\n')
    assert head_revision(tmp_path) is None  # a merge
    (tmp_path / "d.py").unlink()
    write_script(tmp_path, "e.py", "e", "missing")
    assert head_revision(tmp_path) is None  # a parent nobody defines
    assert head_revision(tmp_path / "nowhere") is None


def run_tapir(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys; from tapir.appliance.cli.main import main; "
        "sys.argv = ['tapir', *sys.argv[1:]]; "
        "import atexit, gc; atexit.register(lambda: print('ALEMBIC' if 'alembic' in sys.modules "
        "else 'NO-ALEMBIC', 'FROZEN' if gc.get_freeze_count() else 'NOT-FROZEN', "
        "file=sys.stderr)); main()"
    )
    return subprocess.run(
        [sys.executable, "-c", code, "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TAPIR_DEBUG": ""},
    )


def test_a_command_on_a_current_catalog_does_not_import_alembic(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = run_tapir(home, "init")
    assert first.returncode == 0, first.stderr
    assert "ALEMBIC" in first.stderr.split()  # a new catalog is created by Alembic
    again = run_tapir(home, "backups")
    assert again.returncode == 0, again.stderr
    assert "NO-ALEMBIC" in again.stderr.split()
    # Registered after the test's handler, the CLI's freeze ran before it: the
    # interpreter's final collection has nothing left to walk.
    assert "FROZEN" in again.stderr.split()
