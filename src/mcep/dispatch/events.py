"""Event rows for the append-only log, built from message rows in bulk."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Protocol

from mcep.contacts.models import Channel


class MessageKeys(Protocol):
    """The columns of a message every event carries (an ORM row or a RETURNING row)."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def campaign_id(self) -> uuid.UUID | None: ...
    @property
    def pm_id(self) -> uuid.UUID: ...
    @property
    def prospect_id(self) -> uuid.UUID: ...
    @property
    def variant(self) -> str: ...
    @property
    def channel(self) -> Channel: ...
    @property
    def device_id(self) -> uuid.UUID | None: ...


def event_row(
    kind: str, message: MessageKeys, *, at: datetime, details: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """An ``events`` row of ``kind`` about ``message``, ready for a bulk insert."""
    return {
        "at": at,
        "kind": kind,
        "campaign_id": message.campaign_id,
        "variant": message.variant,
        "channel": message.channel,
        "device_id": message.device_id,
        "prospect_id": message.prospect_id,
        "pm_id": message.pm_id,
        "message_id": message.id,
        "details": dict(details or {}),
    }


def event_rows(
    kind: str,
    messages: Iterable[MessageKeys],
    *,
    at: datetime,
    details: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    return [event_row(kind, m, at=at, details=details) for m in messages]
