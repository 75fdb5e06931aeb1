"""Notices: messages the platform owes a person, outside any campaign.

The one notice today is the confirmation of an opt-out: a person who writes STOP gets one
message saying it worked, on the channel they wrote from, through the device they wrote to.
It is queued in the outbox like any message (durable, retried, leased, recorded), never sent
inline from a webhook, and it is the one message allowed after the opt-out: the worker skips
the opt-out and consent checks for notices.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from mcep.contacts.crypto import Keyring
from mcep.contacts.models import Channel, Prospect
from mcep.dispatch import repository
from mcep.dispatch.content import MessageContent, body_digest, seal_content
from mcep.dispatch.models import EventKind, Message, MessageKind, MessageState

OPT_OUT_CONFIRMATION = "opt_out_confirmation"
OPT_OUT_CONFIRMATION_TEXT = (
    "You are unsubscribed: you will get no more messages from us. Thank you."
)


@dataclass(frozen=True, slots=True)
class Notice:
    """One notice to queue. Without ``device_id`` the last device that wrote to the person
    on ``channel`` is used; without one of those, the worker finds a device."""

    prospect_id: uuid.UUID
    pm_id: uuid.UUID
    channel: Channel
    purpose: str
    body: str
    device_id: uuid.UUID | None = None


def opt_out_confirmation(
    prospect_id: uuid.UUID, pm_id: uuid.UUID, channel: Channel, device_id: uuid.UUID | None
) -> Notice:
    return Notice(
        prospect_id=prospect_id,
        pm_id=pm_id,
        channel=channel,
        purpose=OPT_OUT_CONFIRMATION,
        body=OPT_OUT_CONFIRMATION_TEXT,
        device_id=device_id,
    )


async def _last_devices(
    session: AsyncSession, pairs: set[tuple[uuid.UUID, Channel]]
) -> dict[tuple[uuid.UUID, Channel], uuid.UUID]:
    if not pairs:
        return {}
    rows = await session.execute(
        select(Message.prospect_id, Message.channel, Message.device_id)
        .where(
            Message.prospect_id.in_(sorted({p for p, _ in pairs})),
            Message.device_id.is_not(None),
        )
        .order_by(Message.created_at)
    )
    found: dict[tuple[uuid.UUID, Channel], uuid.UUID] = {}
    for prospect_id, channel, device_id in rows:
        if (prospect_id, channel) in pairs and device_id is not None:
            found[(prospect_id, channel)] = device_id  # the latest one wins
    return found


async def enqueue(
    session: AsyncSession, notices: Sequence[Notice], *, keyring: Keyring, now: datetime
) -> list[uuid.UUID]:
    """Queue the notices, due now, each sealed under its recipient's key (one insert for the
    messages, one for their events). Erased prospects get none. Returns the message ids."""
    if not notices:
        return []
    rows = await session.execute(
        select(Prospect.id, Prospect.wrapped_key).where(
            Prospect.id.in_(sorted({n.prospect_id for n in notices})),
            Prospect.erased_at.is_(None),
        )
    )
    keys = {prospect_id: wrapped for prospect_id, wrapped in rows if wrapped is not None}
    missing = {(n.prospect_id, n.channel) for n in notices if n.device_id is None}
    devices = await _last_devices(session, missing)
    messages: list[dict[str, Any]] = []
    for notice in notices:
        wrapped = keys.get(notice.prospect_id)
        if wrapped is None:
            continue
        message_id = uuid.uuid4()
        content = MessageContent(body=notice.body)
        messages.append(
            {
                "id": message_id,
                "kind": MessageKind.NOTICE,
                "campaign_id": None,
                "pm_id": notice.pm_id,
                "prospect_id": notice.prospect_id,
                "variant": notice.purpose,
                "channel": notice.channel,
                "device_id": notice.device_id or devices.get((notice.prospect_id, notice.channel)),
                "content_enc": seal_content(
                    content, key=keyring.unwrap(wrapped), message_id=message_id
                ),
                "body_sha256": body_digest(content.body),
                "state": MessageState.QUEUED,
                "attempts": 0,
                "failures": 0,
                "next_attempt_at": now,
                "created_at": now,
                "updated_at": now,
            }
        )
    await repository.insert_messages(session, messages)
    keys_ = ("campaign_id", "variant", "channel", "device_id", "prospect_id", "pm_id")
    await repository.insert_events(
        session,
        [
            {"at": now, "kind": EventKind.QUEUED.value, "message_id": row["id"]}
            | {k: row[k] for k in keys_}
            | {"details": {"notice": row["variant"]}}
            for row in messages
        ],
    )
    return [row["id"] for row in messages]
