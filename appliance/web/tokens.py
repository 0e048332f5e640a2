"""API tokens: created on the account page, sent as ``Authorization: Bearer <token>``.

A token acts as its user with the user's *current* role, so demoting a user demotes
their tokens. The token text is shown once; the catalog keeps its SHA-256 only.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from ..catalog.models import User, utcnow
from ..catalog.web_models import ApiToken
from ..engine.service import Appliance

PREFIX = "tapir_"


@dataclass(frozen=True)
class TokenOwner:
    """The user a valid token acts as."""

    user_id: int
    username: str
    role: str
    must_change_password: bool


@dataclass(frozen=True)
class TokenInfo:
    """A token as its owner sees it listed (never the token itself)."""

    id: int
    name: str
    created_at: datetime
    last_used_at: datetime | None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(app: Appliance, user_id: int, username: str, name: str) -> str:
    """A new token for the user; the only time its text exists outside the client."""
    name = name.strip()
    if not name or len(name) > 100:
        raise ValueError("a token name is 1 to 100 characters")
    token = PREFIX + secrets.token_urlsafe(32)
    with app.catalog.session() as s:
        s.add(ApiToken(user_id=user_id, name=name, token_sha256=_digest(token)))
    app.audit(username, "token.create", name)
    return token


def user_tokens(app: Appliance, user_id: int) -> list[TokenInfo]:
    """The user's tokens, newest first."""
    with app.catalog.session() as s:
        rows = s.scalars(
            select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id.desc())
        )
        return [TokenInfo(t.id, t.name, t.created_at, t.last_used_at) for t in rows]


def revoke_token(app: Appliance, user_id: int, username: str, token_id: int) -> None:
    """Delete one of the user's tokens; KeyError when it is not theirs."""
    with app.catalog.session() as s:
        row = s.get(ApiToken, token_id)
        if row is None or row.user_id != user_id:
            raise KeyError(f"no token {token_id}")
        name = row.name
        s.delete(row)
    app.audit(username, "token.revoke", name)


def token_owner(app: Appliance, token: str) -> TokenOwner | None:
    """The user a token acts as, or None for an unknown token."""
    if not token.startswith(PREFIX):
        return None
    with app.catalog.session() as s:
        row = s.execute(
            select(ApiToken, User)
            .join(User, ApiToken.user_id == User.id)
            .where(ApiToken.token_sha256 == _digest(token))
        ).one_or_none()
        if row is None:
            return None
        tok, user = row
        tok.last_used_at = utcnow()
        return TokenOwner(user.id, user.username, user.role, bool(user.must_change_password))
