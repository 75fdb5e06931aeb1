"""A campaign's funnel per variant and channel, from the outbox and the event log.

Telegram gives bots no delivered or read receipts: for Telegram those numbers are not zero,
they are unknown, and the funnel says so (``None``, shown as "n/a").
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import distinct, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from mcep.auth.principal import Permission, Principal, scope_to_owner
from mcep.campaigns.models import Campaign
from mcep.contacts.models import Channel
from mcep.dispatch.models import Event, EventKind, Message, MessageState
from mcep.errors import NotFound

NO_RECEIPTS = frozenset({Channel.TELEGRAM})
WAITING = (MessageState.QUEUED, MessageState.SENDING, MessageState.RETRY_SCHEDULED)
SENT = (MessageState.SENT, MessageState.DELIVERED, MessageState.READ)
DELIVERED = (MessageState.DELIVERED, MessageState.READ)


@dataclass(frozen=True)
class FunnelRow:
    variant: str
    channel: Channel
    queued: int
    waiting: int
    sent: int
    delivered: int | None
    read: int | None
    replied: int
    failed: int
    cancelled: int


def _row(
    variant: str, channel: Channel, states: dict[MessageState, int], replied: int
) -> FunnelRow:
    receipts = channel not in NO_RECEIPTS
    return FunnelRow(
        variant=variant,
        channel=channel,
        queued=sum(states.values()),
        waiting=sum(states.get(s, 0) for s in WAITING),
        sent=sum(states.get(s, 0) for s in SENT),
        delivered=sum(states.get(s, 0) for s in DELIVERED) if receipts else None,
        read=states.get(MessageState.READ, 0) if receipts else None,
        replied=replied,
        failed=states.get(MessageState.FAILED, 0) + states.get(MessageState.DEAD, 0),
        cancelled=states.get(MessageState.CANCELLED, 0),
    )


async def campaign_funnel(
    session: AsyncSession, principal: Principal, campaign_id: uuid.UUID
) -> list[FunnelRow]:
    """Two aggregate queries, whatever the campaign's size; another PM's campaign is a 404."""
    principal.require(Permission.OWNED_READ)
    owned = scope_to_owner(select(Campaign.id), Campaign.pm_id, principal)
    if await session.scalar(owned.where(Campaign.id == campaign_id)) is None:
        raise NotFound("no such campaign")
    states = await session.execute(
        select(Message.variant, Message.channel, Message.state, func.count())
        .where(Message.campaign_id == campaign_id)
        .group_by(Message.variant, Message.channel, Message.state)
    )
    replies = await session.execute(
        select(Event.variant, Event.channel, func.count(distinct(Event.prospect_id)))
        .where(Event.campaign_id == campaign_id, Event.kind == EventKind.REPLIED)
        .group_by(Event.variant, Event.channel)
    )
    by_key: dict[tuple[str, Channel], dict[MessageState, int]] = defaultdict(dict)
    for variant, channel, state, count in states.all():
        by_key[(variant, channel)][state] = count
    replied = {(v, c): n for v, c, n in replies.all() if v is not None and c is not None}
    return [_row(v, c, by_key[(v, c)], replied.get((v, c), 0)) for v, c in sorted(by_key)]
