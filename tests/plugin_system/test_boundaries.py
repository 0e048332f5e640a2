"""The architecture's import rules, checked on the source tree.

The core never imports a plugin; a plugin imports only the documented plugin API;
the hardware layer knows nothing of backups.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path, root: Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    package = "tapir." + ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                names.append(".".join([*base, node.module] if node.module else base))
            elif node.module:
                names.append(node.module)
    return names


def _py_files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_core_never_imports_a_plugin():
    offenders = [
        (str(p.relative_to(ROOT)), name)
        for p in _py_files("appliance")
        for name in _imports(p)
        if name.startswith("tapir.plugins")
    ]
    assert offenders == []


def test_plugins_import_only_the_plugin_api():
    offenders = []
    for p in _py_files("plugins"):
        for name in _imports(p):
            if name.startswith("tapir.appliance") and not name.startswith(
                "tapir.appliance.plugin_api"
            ):
                offenders.append((str(p.relative_to(ROOT)), name))
    assert offenders == []


def test_hardware_knows_nothing_of_backups():
    offenders = [
        (str(p.relative_to(ROOT)), name)
        for p in _py_files("hardware")
        for name in _imports(p)
        if name.startswith(("tapir.appliance", "tapir.plugins"))
    ]
    assert offenders == []


def test_the_rules_see_relative_imports(tmp_path: Path):
    # Guard against a checker that cannot fail: a relative import into the engine
    # from a plugin module must be resolved and caught.
    fake = tmp_path / "plugins" / "disk" / "probe.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("from ...appliance.engine import service\n")
    assert _imports(fake, root=tmp_path) == ["tapir.appliance.engine"]
