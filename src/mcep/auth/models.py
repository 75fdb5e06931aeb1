"""Tables of the auth domain."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mcep.db.base import Base, TimestampMixin, str_enum


class Role(enum.StrEnum):
    ADMIN = "admin"
    PM = "pm"
    COMPLIANCE = "compliance"


class PortfolioManager(TimestampMixin, Base):
    """The owner of prospects, campaigns, leads and webhooks: everything a PM user sees."""

    __tablename__ = "portfolio_managers"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))


class User(TimestampMixin, Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(str_enum(Role))
    pm_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("portfolio_managers.id", ondelete="RESTRICT"), index=True
    )
    is_active: Mapped[bool] = mapped_column(default=True)

    pm: Mapped[PortfolioManager | None] = relationship(lazy="joined")


class ApiKey(TimestampMixin, Base):
    """A machine credential. Only a SHA-256 of the secret is kept; the key is shown once."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]


class RefreshToken(TimestampMixin, Base):
    """A refresh token's identity (``jti``); rotated on every use, revocable."""

    __tablename__ = "refresh_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
