"""Tables of the inbound domain: which provider events were seen, and what people wrote."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Index, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mcep.contacts.models import Channel
from mcep.db.base import Base, str_enum, utcnow


class ProviderEventSeen(Base):
    """One row per provider event id: a retried or replayed webhook finds its id here and
    changes nothing."""

    __tablename__ = "provider_events_seen"

    channel: Mapped[Channel] = mapped_column(str_enum(Channel), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class InboundMessage(Base):
    """A message a person sent to one of our devices, attached to its conversation.

    The text is personal data: sealed under the sender's prospect data key (so erasure
    shreds it), with its SHA-256 kept for the compliance record. Messages from unknown
    senders keep only the digest.
    """

    __tablename__ = "inbound_messages"
    __table_args__ = (
        UniqueConstraint("channel", "event_id"),
        Index("ix_inbound_messages_prospect_at", "prospect_id", "at"),
        Index("ix_inbound_messages_pm_at", "pm_id", "at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    at: Mapped[datetime]
    channel: Mapped[Channel] = mapped_column(str_enum(Channel))
    event_id: Mapped[str] = mapped_column(String(200))
    device_id: Mapped[uuid.UUID | None]
    prospect_id: Mapped[uuid.UUID | None]
    pm_id: Mapped[uuid.UUID | None]
    in_reply_to: Mapped[uuid.UUID | None]
    """The last message we sent this person on this channel: the conversation it continues."""
    text_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    text_sha256: Mapped[str] = mapped_column(String(64))
    is_stop: Mapped[bool] = mapped_column(default=False)
