"""Finding catalog rows by their operator-facing name."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session


def id_by_name(session: Session, model: Any, name: str, what: str) -> int:
    """The id of the ``model`` row named ``name``; KeyError("no WHAT named 'NAME'") if none."""
    found = session.scalar(select(model.id).where(model.name == name))
    if found is None:
        raise KeyError(f"no {what} named {name!r}")
    return int(found)


def optional_id_by_name(session: Session, model: Any, name: str | None, what: str) -> int | None:
    """Like :func:`id_by_name`, but None for no name at all."""
    return None if name is None else id_by_name(session, model, name, what)
