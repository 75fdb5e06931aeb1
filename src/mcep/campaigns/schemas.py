"""Input and output shapes of the profiles, templates and campaigns APIs."""

from __future__ import annotations

import uuid
from datetime import datetime, time
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, Field, StringConstraints, field_validator

from mcep.api.schemas import StrictModel
from mcep.campaigns.models import CampaignStatus
from mcep.contacts.models import Channel
from mcep.contacts.schemas import AttributeKey, Tag

Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
VariantName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
Weekday = Annotated[int, Field(ge=0, le=6)]
RetryDelay = Annotated[int, Field(ge=0, le=7 * 86400)]


def _unique(values: list[Any], what: str) -> list[Any]:
    if len(set(values)) != len(values):
        raise ValueError(f"{what} must not repeat")
    return values


# --- profiles ------------------------------------------------------------------------------


class ProfileFields(StrictModel):
    lead_threshold: int = Field(default=70, ge=50, le=90)
    channel_order: list[Channel] = Field(
        default_factory=lambda: [
            Channel.WHATSAPP,
            Channel.IMESSAGE,
            Channel.SIGNAL,
            Channel.TELEGRAM,
        ],
        min_length=1,
        max_length=4,
    )
    window_start: time = time(9)
    window_end: time = time(18)
    quiet_start: time | None = None
    quiet_end: time | None = None
    send_days: list[Weekday] = Field(
        default_factory=lambda: list(range(7)), min_length=1, max_length=7
    )
    cap_per_day: int = Field(default=1, ge=1, le=100)
    cap_per_week: int = Field(default=3, ge=1, le=700)
    retry_delays: list[RetryDelay] = Field(default_factory=lambda: [60, 300, 900], max_length=10)

    @field_validator("channel_order")
    @classmethod
    def _channels_once(cls, value: list[Channel]) -> list[Channel]:
        return _unique(value, "channels")

    @field_validator("send_days")
    @classmethod
    def _days_once(cls, value: list[int]) -> list[int]:
        return _unique(value, "days")


class ProfileCreate(ProfileFields):
    name: Name


class ProfileUpdate(StrictModel):
    name: Name | None = None
    lead_threshold: int | None = Field(default=None, ge=50, le=90)
    channel_order: list[Channel] | None = Field(default=None, min_length=1, max_length=4)
    window_start: time | None = None
    window_end: time | None = None
    quiet_start: time | None = None
    quiet_end: time | None = None
    send_days: list[Weekday] | None = Field(default=None, min_length=1, max_length=7)
    cap_per_day: int | None = Field(default=None, ge=1, le=100)
    cap_per_week: int | None = Field(default=None, ge=1, le=700)
    retry_delays: list[RetryDelay] | None = Field(default=None, max_length=10)

    @field_validator("channel_order")
    @classmethod
    def _channels_once(cls, value: list[Channel] | None) -> list[Channel] | None:
        return None if value is None else _unique(value, "channels")

    @field_validator("send_days")
    @classmethod
    def _days_once(cls, value: list[int] | None) -> list[int] | None:
        return None if value is None else _unique(value, "days")


class ProfileOut(BaseModel):
    id: uuid.UUID
    pm_id: uuid.UUID
    name: str
    lead_threshold: int
    channel_order: list[Channel]
    window_start: time
    window_end: time
    quiet_start: time | None
    quiet_end: time | None
    send_days: list[int]
    cap_per_day: int
    cap_per_week: int
    retry_delays: list[int]
    created_at: datetime
    updated_at: datetime


# --- templates -----------------------------------------------------------------------------


class WhatsAppTemplateSpec(StrictModel):
    """An approved WhatsApp template; ``parameters`` are Jinja2 expressions, in order."""

    name: str = Field(min_length=1, max_length=512, pattern=r"^[a-z0-9_]+$")
    language: str = Field(min_length=2, max_length=16, pattern=r"^[a-z]{2,3}(_[A-Z]{2})?$")
    parameters: list[Annotated[str, StringConstraints(min_length=1, max_length=1000)]] = Field(
        default_factory=list, max_length=20
    )


class TemplateCreate(StrictModel):
    name: Name
    body: str = Field(min_length=1, max_length=10_000)
    whatsapp: WhatsAppTemplateSpec | None = None


class TemplateUpdate(StrictModel):
    name: Name | None = None
    body: str | None = Field(default=None, min_length=1, max_length=10_000)
    whatsapp: WhatsAppTemplateSpec | None = None


class TemplateOut(BaseModel):
    id: uuid.UUID
    pm_id: uuid.UUID
    name: str
    body: str
    whatsapp: WhatsAppTemplateSpec | None
    created_at: datetime
    updated_at: datetime


# --- campaigns -----------------------------------------------------------------------------


class AudienceFilter(StrictModel):
    """The same filters as ``GET /api/v1/prospects``, evaluated at launch."""

    tags: list[Tag] = Field(default_factory=list, max_length=20)
    attributes: dict[AttributeKey, str] = Field(default_factory=dict, max_length=20)
    channel: Channel | None = None
    consent: Channel | None = None
    score_min: float | None = Field(default=None, ge=0, le=100)
    score_max: float | None = Field(default=None, ge=0, le=100)


class Audience(StrictModel):
    """Exactly one of an explicit list of prospect ids or a filter."""

    prospect_ids: list[uuid.UUID] | None = Field(default=None, min_length=1, max_length=10_000)
    filter: AudienceFilter | None = None


class VariantIn(StrictModel):
    name: VariantName
    template_id: uuid.UUID
    weight: float = Field(default=1.0, ge=0, le=1000)


class CampaignCreate(StrictModel):
    name: Name
    profile_id: uuid.UUID | None = None
    template_id: uuid.UUID | None = None
    variants: list[VariantIn] | None = Field(default=None, min_length=1, max_length=20)
    audience: Audience
    start_at: AwareDatetime | None = None


class VariantOut(BaseModel):
    name: str
    template_id: uuid.UUID
    weight: float


class SkippedRecipient(BaseModel):
    prospect_id: uuid.UUID
    reason: str


class LaunchResult(BaseModel):
    """What a launch did: every requested recipient is either queued or skipped with a reason."""

    audience: int
    queued: int
    skipped: int
    skip_reasons: dict[str, int]
    skipped_recipients: list[SkippedRecipient]
    by_channel: dict[str, int]
    by_variant: dict[str, int]
    first_attempt_at: datetime | None
    last_attempt_at: datetime | None
    merkle_root: str


class CampaignOut(BaseModel):
    id: uuid.UUID
    pm_id: uuid.UUID
    name: str
    profile_id: uuid.UUID | None
    variants: list[VariantOut]
    audience: dict[str, Any]
    start_at: datetime | None
    status: CampaignStatus
    launched_at: datetime | None
    launch_result: LaunchResult | None
    created_at: datetime
    updated_at: datetime
