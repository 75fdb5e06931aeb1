"""Tables of the contacts domain.

Personal fields (name, phone, channel handles) are stored only encrypted, under a per-prospect
data key that is itself wrapped by the master key. Erasure destroys the wrapped key, so every
copy of those fields (including in backups) becomes unreadable; what compliance must keep
stays as keyed hashes (``phone_hash``, ``ProspectHandle.handle_hash``).
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, LargeBinary, String, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mcep.db.base import Base, TimestampMixin, str_enum, utcnow


class Channel(enum.StrEnum):
    WHATSAPP = "whatsapp"
    TELEGRAM = "telegram"
    SIGNAL = "signal"
    IMESSAGE = "imessage"


class ConsentStatus(enum.StrEnum):
    GRANTED = "granted"
    WITHDRAWN = "withdrawn"


class Prospect(TimestampMixin, Base):
    __tablename__ = "prospects"
    __table_args__ = (
        Index(
            "uq_prospects_pm_phone_live",
            "pm_id",
            "phone_hash",
            unique=True,
            sqlite_where=text("erased_at IS NULL"),
            postgresql_where=text("erased_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    pm_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("portfolio_managers.id", ondelete="RESTRICT"), index=True
    )
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    name_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    phone_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    handles_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    phone_hash: Mapped[str | None] = mapped_column(String(64))
    timezone: Mapped[str] = mapped_column(String(64))
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    opted_out: Mapped[bool] = mapped_column(default=False)
    opted_out_at: Mapped[datetime | None]
    erased_at: Mapped[datetime | None]
    score: Mapped[float | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    tags: Mapped[list[ProspectTag]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="ProspectTag.tag"
    )
    handles: Mapped[list[ProspectHandle]] = relationship(
        cascade="all, delete-orphan", lazy="selectin"
    )
    consents: Mapped[list[ProspectConsent]] = relationship(
        cascade="all, delete-orphan", lazy="selectin"
    )


class ProspectTag(Base):
    __tablename__ = "prospect_tags"

    prospect_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("prospects.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class ProspectHandle(Base):
    """Which channels a prospect can be reached on, with a keyed hash of the handle.

    The hash lets inbound traffic find its prospect without decrypting anything.
    """

    __tablename__ = "prospect_handles"
    __table_args__ = (Index("ix_prospect_handles_lookup", "channel", "handle_hash"),)

    prospect_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("prospects.id", ondelete="CASCADE"), primary_key=True
    )
    channel: Mapped[Channel] = mapped_column(str_enum(Channel), primary_key=True)
    handle_hash: Mapped[str] = mapped_column(String(64))


class ProspectConsent(Base):
    """The current consent per channel: the latest entry of the ledger."""

    __tablename__ = "prospect_consents"

    prospect_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("prospects.id", ondelete="CASCADE"), primary_key=True
    )
    channel: Mapped[Channel] = mapped_column(str_enum(Channel), primary_key=True)
    status: Mapped[ConsentStatus] = mapped_column(str_enum(ConsentStatus))
    source: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime]


class ConsentEntry(Base):
    """The consent ledger: every grant and withdrawal, with its source and time, forever."""

    __tablename__ = "consent_ledger"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    prospect_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("prospects.id", ondelete="CASCADE"), index=True
    )
    channel: Mapped[Channel] = mapped_column(str_enum(Channel))
    status: Mapped[ConsentStatus] = mapped_column(str_enum(ConsentStatus))
    source: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(default=utcnow)
