"""Tables of the campaigns domain: profiles, templates, campaigns and their variants."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime, time
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mcep.db.base import Base, TimestampMixin, str_enum, utcnow

DEFAULT_RETRY_DELAYS = [60, 300, 900]
DEFAULT_CHANNEL_ORDER = ["whatsapp", "imessage", "signal", "telegram"]
ALL_DAYS = [0, 1, 2, 3, 4, 5, 6]


class CampaignStatus(enum.StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    COMPLETED = "completed"


class EngagementProfile(TimestampMixin, Base):
    """A PM's rules of engagement: when, on which channel, and how often prospects are reached.

    Send window and quiet hours are wall-clock times in the *recipient's* time zone; a window
    whose end is before its start runs past midnight. ``send_days`` are ISO weekdays 0-6
    (Monday = 0) in the recipient's zone.
    """

    __tablename__ = "engagement_profiles"
    __table_args__ = (
        UniqueConstraint("pm_id", "name"),
        CheckConstraint("lead_threshold BETWEEN 50 AND 90", name="lead_threshold_range"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    pm_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("portfolio_managers.id", ondelete="RESTRICT"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    lead_threshold: Mapped[int] = mapped_column(default=70)
    channel_order: Mapped[list[str]] = mapped_column(JSON, default=lambda: DEFAULT_CHANNEL_ORDER)
    window_start: Mapped[time] = mapped_column(default=time(9))
    window_end: Mapped[time] = mapped_column(default=time(18))
    quiet_start: Mapped[time | None]
    quiet_end: Mapped[time | None]
    send_days: Mapped[list[int]] = mapped_column(JSON, default=lambda: ALL_DAYS)
    cap_per_day: Mapped[int] = mapped_column(default=1)
    cap_per_week: Mapped[int] = mapped_column(default=3)
    retry_delays: Mapped[list[int]] = mapped_column(JSON, default=lambda: DEFAULT_RETRY_DELAYS)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Template(TimestampMixin, Base):
    """A message body with Jinja2 placeholders, and optionally the approved WhatsApp template
    (with its body parameters as Jinja2 expressions, in order) to use outside the 24-hour
    window."""

    __tablename__ = "templates"
    __table_args__ = (UniqueConstraint("pm_id", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    pm_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("portfolio_managers.id", ondelete="RESTRICT"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    wa_template_name: Mapped[str | None] = mapped_column(String(512))
    wa_language: Mapped[str | None] = mapped_column(String(16))
    wa_parameters: Mapped[list[str]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Campaign(TimestampMixin, Base):
    """One outreach to an audience. ``audience`` is ``{"prospect_ids": [...]}`` or
    ``{"filter": {...}}``; ``launch_result`` keeps what the launch queued and skipped (why)."""

    __tablename__ = "campaigns"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    pm_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("portfolio_managers.id", ondelete="RESTRICT"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    profile_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("engagement_profiles.id", ondelete="RESTRICT"), index=True
    )
    audience: Mapped[dict[str, Any]] = mapped_column(JSON)
    start_at: Mapped[datetime | None]
    status: Mapped[CampaignStatus] = mapped_column(
        str_enum(CampaignStatus), default=CampaignStatus.DRAFT
    )
    launched_at: Mapped[datetime | None]
    launch_result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    variants: Mapped[list[CampaignVariant]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="CampaignVariant.name"
    )


class CampaignVariant(Base):
    """One arm of a campaign: a template and its relative weight (a single-template campaign
    has one variant)."""

    __tablename__ = "campaign_variants"

    campaign_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    template_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("templates.id", ondelete="RESTRICT"), index=True
    )
    weight: Mapped[float] = mapped_column(default=1.0)
