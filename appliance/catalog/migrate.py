"""Alembic migrations, run programmatically so that `tapir db upgrade` needs no alembic.ini.

Every command opens the catalog and upgrades it. Alembic (and the migration scripts)
are imported only when the catalog is not at the newest revision already: a plain
query and a look at the scripts' ``revision`` lines tell, and anything unusual there
(a merge, a script that cannot be read) falls back to Alembic itself.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
VERSIONS = MIGRATIONS / "versions"

_REVISION = re.compile(r"""^revision(?:\s*:\s*[\w\[\], |]+)?\s*=\s*["']([^"']+)["']\s*$""", re.M)
_DOWN = re.compile(
    r"""^down_revision(?:\s*:\s*[\w\[\], |]+)?\s*=\s*(None|["']([^"']+)["'])\s*$""", re.M
)


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    if revision == "head" and is_at_head(engine):
        return
    from alembic import command

    command.upgrade(alembic_config(engine), revision)


def head_revision(versions: Path = VERSIONS) -> str | None:
    """The single newest revision of the migration scripts, or None when unsure.

    Reads each script's ``revision`` and ``down_revision`` lines; None (so the caller
    asks Alembic) for a script without exactly one of each, a merge or several heads.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    try:
        # Alembic skips __init__.py and editor files the same way.
        scripts = [
            p for p in sorted(versions.glob("*.py")) if not p.name.startswith(("__init__", ".#"))
        ]
        for script in scripts:
            source = script.read_text(encoding="utf-8")
            found, down = _REVISION.findall(source), _DOWN.findall(source)
            if len(found) != 1 or len(down) != 1:
                return None
            revisions.add(found[0])
            if down[0][0] != "None":
                parents.add(down[0][1])
    except (OSError, UnicodeDecodeError):
        return None
    heads = revisions - parents
    if len(scripts) != len(revisions) or len(heads) != 1 or not parents <= revisions:
        return None
    return heads.pop()


def is_at_head(engine: Engine) -> bool:
    """True when the catalog's recorded revision is the newest script's (no Alembic needed)."""
    head = head_revision()
    if head is None:
        return False
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    except SQLAlchemyError:
        return False  # no catalog yet, or no version table: let Alembic create it
    return [row[0] for row in rows] == [head]


def current(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
