"""Tables of the dispatch domain: the message outbox, its attempts, and the event log.

Message bodies are personal data: they are stored sealed under the recipient's per-prospect
data key (``content_enc``, see :mod:`mcep.dispatch.content`), so erasing a prospect shreds
their messages too; ``body_sha256`` stays behind for the compliance record.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from mcep.contacts.models import Channel
from mcep.db.base import Base, TimestampMixin, str_enum, utcnow


class MessageState(enum.StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    RETRY_SCHEDULED = "retry_scheduled"
    FAILED = "failed"
    DEAD = "dead"
    CANCELLED = "cancelled"


WAITING_SQL = "state IN ('queued', 'retry_scheduled')"


class MessageKind(enum.StrEnum):
    """What a message is for: a campaign's outreach, or a notice the platform owes the person
    (the confirmation of an opt-out), which belongs to no campaign."""

    CAMPAIGN = "campaign"
    NOTICE = "notice"


class EventKind(enum.StrEnum):
    """Kinds this domain writes; the column is plain text so other domains can add kinds."""

    QUEUED = "queued"
    SKIPPED = "skipped"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    REPLIED = "replied"
    RETRY_SCHEDULED = "retry_scheduled"
    FAILED = "failed"
    DEAD = "dead"
    CANCELLED = "cancelled"
    REPLAYED = "replayed"
    LEASE_EXPIRED = "lease_expired"
    REQUEUED = "requeued"
    OPTED_OUT = "opted_out"


class Message(TimestampMixin, Base):
    """The outbox: one row per recipient per campaign, from queued to its final state.

    Notices (``kind`` ``notice``, no campaign) go through the same outbox and worker.
    """

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("campaign_id", "prospect_id"),
        # What the claim walks, in order: only the waiting rows, however large the outbox.
        Index(
            "ix_messages_waiting",
            "next_attempt_at",
            "id",
            postgresql_where=text(WAITING_SQL),
            sqlite_where=text(WAITING_SQL),
        ),
        Index("ix_messages_lease", "state", "lease_expires_at"),
        Index("ix_messages_prospect_recent", "prospect_id", "created_at"),
        Index("ix_messages_pm_recent", "pm_id", "created_at"),
        Index("ix_messages_device_recent", "device_id", "created_at"),
        Index("ix_messages_provider_id", "channel", "provider_message_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    campaign_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("campaigns.id", ondelete="RESTRICT")
    )
    kind: Mapped[MessageKind] = mapped_column(
        str_enum(MessageKind), default=MessageKind.CAMPAIGN, server_default=text("'campaign'")
    )
    pm_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("portfolio_managers.id", ondelete="RESTRICT")
    )
    prospect_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("prospects.id", ondelete="CASCADE"))
    variant: Mapped[str] = mapped_column(String(64))
    channel: Mapped[Channel] = mapped_column(str_enum(Channel))
    device_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("devices.id", ondelete="SET NULL")
    )
    content_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    body_sha256: Mapped[str] = mapped_column(String(64))
    state: Mapped[MessageState] = mapped_column(str_enum(MessageState), default=MessageState.QUEUED)
    attempts: Mapped[int] = mapped_column(default=0)
    """Claims so far; ``(id, attempts)`` is each attempt's id, so this never goes back."""
    failures: Mapped[int] = mapped_column(default=0)
    """Transient failures since queued or replayed: what the retry policy counts."""
    next_attempt_at: Mapped[datetime]
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_expires_at: Mapped[datetime | None]
    provider_message_id: Mapped[str | None] = mapped_column(String(200))
    last_error: Mapped[str | None] = mapped_column(String(500))
    sent_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    read_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class MessageAttempt(Base):
    """One send attempt (one claim) of a message; ``(message_id, attempt)`` is the attempt id
    the provider sees as the idempotency key."""

    __tablename__ = "message_attempts"
    __table_args__ = (UniqueConstraint("message_id", "attempt"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    message_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    attempt: Mapped[int]
    device_id: Mapped[uuid.UUID | None]
    lease_owner: Mapped[str] = mapped_column(String(100))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(32))
    code: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(String(500))
    retry_after: Mapped[float | None]
    provider_message_id: Mapped[str | None] = mapped_column(String(200))


class Event(Base):
    """The append-only engagement log. No foreign keys: an event is a fact about the past and
    outlives the rows it mentions."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_campaign_kind", "campaign_id", "kind"),
        Index("ix_events_message", "message_id"),
        Index("ix_events_pm_at", "pm_id", "at"),
        Index("ix_events_prospect_at", "prospect_id", "at"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))
    campaign_id: Mapped[uuid.UUID | None]
    variant: Mapped[str | None] = mapped_column(String(64))
    channel: Mapped[Channel | None] = mapped_column(str_enum(Channel))
    device_id: Mapped[uuid.UUID | None]
    prospect_id: Mapped[uuid.UUID | None]
    pm_id: Mapped[uuid.UUID | None]
    message_id: Mapped[uuid.UUID | None]
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
