"""Outbox rules reachable from the API: reading a message with its content, replaying dead ones.

Flushes; never commits.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from mcep.audit import service as audit
from mcep.auth.principal import Permission, Principal
from mcep.campaigns.models import Campaign, CampaignStatus, EngagementProfile
from mcep.campaigns.rules import rules_of
from mcep.contacts.crypto import Keyring
from mcep.contacts.models import Prospect
from mcep.dispatch import repository
from mcep.dispatch.content import MessageContent, open_content
from mcep.dispatch.events import event_row
from mcep.dispatch.models import EventKind, Message, MessageKind, MessageState
from mcep.dispatch.schemas import (
    AttemptOut,
    EventOut,
    MessageDetail,
    MessageOut,
    WhatsAppTemplateOut,
)
from mcep.dispatch.states import move
from mcep.dispatch.windows import next_allowed
from mcep.errors import Conflict


def message_content(
    message: Message, prospect: Prospect, keyring: Keyring
) -> MessageContent | None:
    """The message's body, or ``None`` once the prospect's key is shredded."""
    if message.content_enc is None or prospect.wrapped_key is None:
        return None
    key = keyring.unwrap(prospect.wrapped_key)
    return open_content(message.content_enc, key=key, message_id=message.id)


async def detail(
    session: AsyncSession, principal: Principal, message_id: uuid.UUID, *, keyring: Keyring
) -> MessageDetail:
    """One message with its body (opened with the prospect's key), attempts and events."""
    principal.require(Permission.OWNED_READ)
    message = await repository.get_message(session, principal, message_id)
    prospect = await session.get(Prospect, message.prospect_id)
    content = message_content(message, prospect, keyring) if prospect else None
    template = content.whatsapp_template if content else None
    return MessageDetail(
        **MessageOut.model_validate(message, from_attributes=True).model_dump(),
        body=content.body if content else None,
        whatsapp_template=None
        if template is None
        else WhatsAppTemplateOut(
            name=template.name,
            language=template.language,
            body_parameters=list(template.body_parameters),
        ),
        attempt_history=[
            AttemptOut.model_validate(a, from_attributes=True)
            for a in await repository.attempts_of(session, message.id)
        ],
        events=[
            EventOut.model_validate(e, from_attributes=True)
            for e in await repository.events_of(session, message.id)
        ],
    )


async def replay(
    session: AsyncSession, principal: Principal, message_id: uuid.UUID, *, now: datetime
) -> Message:
    """Put a dead message back in line, inside its recipient's send window, with a fresh
    retry budget (attempt numbers keep counting, so attempt ids stay unique)."""
    principal.require(Permission.OWNED_WRITE)
    message = await repository.get_message(session, principal, message_id, for_update=True)
    if message.state is not MessageState.DEAD:
        raise Conflict(f"only a dead message can be replayed; this one is {message.state}")
    prospect = await session.get(Prospect, message.prospect_id)
    if prospect is None or prospect.erased_at is not None:
        raise Conflict("the prospect was erased; the message can't be replayed")
    if message.kind is MessageKind.NOTICE:
        # A notice (the opt-out confirmation) is owed to the person whatever their opt-out
        # says, and answers them at once rather than inside a campaign's send window.
        next_attempt_at = now
    else:
        if prospect.opted_out:
            raise Conflict("the prospect has opted out; the message can't be replayed")
        next_attempt_at = await _reopen_campaign(session, message, prospect, now=now)
    message.state = move(message.state, MessageState.QUEUED)
    message.failures = 0
    message.lease_owner = message.lease_expires_at = None
    message.next_attempt_at = next_attempt_at
    message.updated_at = now
    await session.flush()
    await repository.insert_events(session, [event_row(EventKind.REPLAYED, message, at=now)])
    await audit.append(
        session,
        actor=principal.actor,
        action="message.replayed",
        object_type="message",
        object_id=str(message.id),
        details={
            "pm_id": str(message.pm_id),
            "campaign_id": None if message.campaign_id is None else str(message.campaign_id),
        },
    )
    return message


async def _reopen_campaign(
    session: AsyncSession, message: Message, prospect: Prospect, *, now: datetime
) -> datetime:
    """Check the message's campaign may dispatch again (reopening a completed one) and return
    the first instant inside the recipient's send window."""
    campaign = await session.get(Campaign, message.campaign_id, with_for_update=True)
    assert campaign is not None
    if campaign.status is CampaignStatus.CANCELLED:
        raise Conflict("the campaign was cancelled; its messages can't be replayed")
    if campaign.status is CampaignStatus.COMPLETED:
        campaign.status = CampaignStatus.RUNNING
    profile = (
        await session.get(EngagementProfile, campaign.profile_id) if campaign.profile_id else None
    )
    return next_allowed(now, zone=prospect.timezone, window=rules_of(profile).window)
