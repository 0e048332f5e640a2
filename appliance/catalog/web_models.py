"""Catalog rows owned by the web panel: API tokens, pool usage samples (the usage
chart) and the TapeAlert flags last seen per drive (the dashboard).

Only a token's SHA-256 is stored: a token is 32 random bytes, so a fast hash is
enough (there is nothing to brute-force), and a leaked catalog reveals no token.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, UTCDateTime, utcnow


class ApiToken(Base):
    """A bearer token for /api/v1, acting as its user with that user's current role."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class PoolUsageSample(Base):
    """A pool's usage at one moment (at most one per pool per hour; engine/usage.py)."""

    __tablename__ = "pool_usage_samples"
    __table_args__ = (Index("ix_pool_usage_samples_pool_taken", "pool_id", "taken_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    pool_id: Mapped[int] = mapped_column(ForeignKey("pools.id", ondelete="CASCADE"))
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    used: Mapped[int] = mapped_column(BigInteger)
    free: Mapped[int | None] = mapped_column(BigInteger)
    logical: Mapped[int] = mapped_column(BigInteger)


class TapeAlertRecord(Base):
    """The TapeAlert flags a drive reported when last read (reading clears them in the
    drive, so this row is the only memory of them)."""

    __tablename__ = "tape_alerts"
    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), unique=True
    )
    flags: Mapped[list[Any]] = mapped_column(default=list)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
