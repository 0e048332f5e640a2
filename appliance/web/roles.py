"""Who may do what: three roles, ranked, and the rule every endpoint is checked by.

An endpoint states the least role it needs with :func:`requires`. One that states
nothing (a plugin's page, say) needs ``read-only`` to look and ``operator`` to
change anything, so no endpoint is left open by forgetting the decorator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ..engine.service import ROLES

RANK = {"read-only": 0, "operator": 1, "admin": 2}
assert set(RANK) == set(ROLES)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

F = TypeVar("F", bound=Callable[..., object])


def requires(role: str) -> Callable[[F], F]:
    """Mark a view as needing at least ``role`` ("read-only", "operator" or "admin")."""
    if role not in RANK:
        raise ValueError(f"unknown role {role!r}")

    def mark(view: F) -> F:
        view._tapir_role = role  # type: ignore[attr-defined]
        return view

    return mark


def needed_role(view: Callable[..., object] | None, method: str) -> str:
    """The least role ``view`` needs for a ``method`` request."""
    declared = getattr(view, "_tapir_role", None)
    if declared:
        return str(declared)
    return "read-only" if method in SAFE_METHODS else "operator"


def allows(user_role: str, needed: str) -> bool:
    """True when ``user_role`` is at least ``needed`` (an unknown role is allowed nothing)."""
    return user_role in RANK and RANK[user_role] >= RANK[needed]
