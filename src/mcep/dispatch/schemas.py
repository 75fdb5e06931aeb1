"""Output shapes of the messages API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from mcep.contacts.models import Channel
from mcep.dispatch.models import MessageKind, MessageState


class MessageOut(BaseModel):
    id: uuid.UUID
    kind: MessageKind
    campaign_id: uuid.UUID | None
    """``null`` for a notice (an opt-out confirmation), which belongs to no campaign."""
    pm_id: uuid.UUID
    prospect_id: uuid.UUID
    variant: str
    channel: Channel
    device_id: uuid.UUID | None
    state: MessageState
    attempts: int
    failures: int
    next_attempt_at: datetime
    provider_message_id: str | None
    last_error: str | None
    body_sha256: str
    sent_at: datetime | None
    delivered_at: datetime | None
    read_at: datetime | None
    created_at: datetime
    updated_at: datetime


class AttemptOut(BaseModel):
    attempt: int
    device_id: uuid.UUID | None
    lease_owner: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str | None
    code: str | None
    reason: str | None
    retry_after: float | None
    provider_message_id: str | None


class EventOut(BaseModel):
    id: int
    at: datetime
    kind: str
    channel: Channel | None
    device_id: uuid.UUID | None
    details: dict[str, Any]


class WhatsAppTemplateOut(BaseModel):
    name: str
    language: str
    body_parameters: list[str]


class MessageDetail(MessageOut):
    """One message with its content (``null`` once the prospect is erased) and history."""

    body: str | None
    whatsapp_template: WhatsAppTemplateOut | None
    attempt_history: list[AttemptOut]
    events: list[EventOut]
