"""Panel users administered by an admin: listing, changing roles, deleting.

The appliance always keeps one admin: demoting or deleting the last one is
refused (TapirError), since nobody could then manage users again without the
command line. Creating users and setting passwords stay in the facade.
"""

from __future__ import annotations

from sqlalchemy import delete, func, select

from ..catalog.models import User
from ..catalog.web_models import ApiToken
from ..plugin_api.errors import TapirError
from .context import EngineContext

ROLES = ("admin", "operator", "read-only")


def users(env: EngineContext) -> list[User]:
    """Every user, by name."""
    with env.catalog.session() as s:
        return list(s.scalars(select(User).order_by(User.username)))


def _user(s: object, username: str) -> User:
    user = s.scalar(select(User).where(User.username == username))  # type: ignore[attr-defined]
    if user is None:
        raise KeyError(f"no user named {username!r}")
    return user


def _other_admins(s: object, user: User) -> int:
    return int(
        s.scalar(  # type: ignore[attr-defined]
            select(func.count(User.id)).where(User.role == "admin", User.id != user.id)
        )
        or 0
    )


def set_role(env: EngineContext, username: str, role: str) -> str:
    """Give the user ``role``; returns the old role. Refused for the last admin."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r} (choose from {', '.join(ROLES)})")
    with env.catalog.session() as s:
        user = _user(s, username)
        old = user.role
        if old == "admin" and role != "admin" and not _other_admins(s, user):
            raise TapirError(f"{username!r} is the last admin; make another user admin first")
        user.role = role
        return old


def delete_user(env: EngineContext, username: str) -> None:
    """Delete the user and their API tokens. Refused for the last admin."""
    with env.catalog.session() as s:
        user = _user(s, username)
        if user.role == "admin" and not _other_admins(s, user):
            raise TapirError(f"{username!r} is the last admin and cannot be deleted")
        # Explicit: SQLite enforces ON DELETE CASCADE only with its foreign_keys pragma.
        s.execute(delete(ApiToken).where(ApiToken.user_id == user.id))
        s.delete(user)
