"""The wheel an appliance image installs carries everything the code loads at run time."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_has_migrations_templates_and_every_package(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("tapir_backup-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    versions = sorted((ROOT / "appliance/catalog/migrations/versions").glob("0*.py"))
    assert versions
    for v in versions:
        assert f"tapir/appliance/catalog/migrations/versions/{v.name}" in names
    assert "tapir/appliance/catalog/migrations/env.py" in names
    assert "tapir/appliance/catalog/migrations/script.py.mako" in names
    for folder in ("templates", "static"):
        for f in (ROOT / "appliance/web" / folder).rglob("*"):
            if f.is_file():
                assert f"tapir/appliance/web/{f.relative_to(ROOT / 'appliance/web')}" in names
    # Every source module of the three top-level folders is in the wheel.
    for top in ("appliance", "hardware", "plugins"):
        for f in (ROOT / top).rglob("*.py"):
            assert f"tapir/{f.relative_to(ROOT)}" in names, f
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[tapir]" in text and "disk = tapir.plugins.disk.plugin" in text
