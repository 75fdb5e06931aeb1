"""Turning verified provider events into state: statuses, replies, opt-outs.

Every step is set-based (one statement per kind of change per webhook batch). Events are
de-duplicated by provider event id, so a webhook the provider retries changes nothing; a
status only ever moves a message forward; a reply is attached to the conversation (the
prospect, their PM, the last message we sent them on that channel, the device); a stop request
sets the global opt-out and cancels everything still queued for that person.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mcep.audit import service as audit
from mcep.channels.base import (
    DeliveryStatus,
    InboundMessage,
    OptOutEvent,
    ProviderEvent,
    StatusEvent,
)
from mcep.contacts.crypto import Keyring
from mcep.contacts.models import Channel, Prospect, ProspectHandle
from mcep.dispatch import notices
from mcep.dispatch import repository as dispatch_repository
from mcep.dispatch.content import body_digest
from mcep.dispatch.events import event_rows
from mcep.dispatch.models import Event, EventKind, Message, MessageState
from mcep.dispatch.states import predecessors
from mcep.inbound.models import InboundMessage as InboundRow
from mcep.inbound.models import ProviderEventSeen
from mcep.inbound.stopwords import is_stop_request

_STATUS_ORDER = (
    (DeliveryStatus.SENT, MessageState.SENT, EventKind.SENT),
    (DeliveryStatus.DELIVERED, MessageState.DELIVERED, EventKind.DELIVERED),
    (DeliveryStatus.READ, MessageState.READ, EventKind.READ),
    (DeliveryStatus.FAILED, MessageState.FAILED, EventKind.FAILED),
)
_KEYS = (
    Message.id,
    Message.campaign_id,
    Message.pm_id,
    Message.prospect_id,
    Message.variant,
    Message.channel,
    Message.device_id,
)


@dataclass
class IngestResult:
    received: int = 0
    duplicates: int = 0
    statuses_applied: int = 0
    stale_statuses: int = 0
    replies: int = 0
    unmatched_replies: int = 0
    opted_out: list[uuid.UUID] = field(default_factory=list)


def normalise_sender(channel: Channel, sender: str) -> str:
    """The sender as our handles store it: E.164 with ``+`` for phone-based channels."""
    sender = sender.strip()
    if channel in (Channel.WHATSAPP, Channel.SIGNAL) and sender.isdigit():
        return "+" + sender
    if channel is Channel.IMESSAGE:
        return sender.lower() if "@" in sender else ("+" + sender if sender.isdigit() else sender)
    return sender


async def ingest(
    session: AsyncSession,
    events: Sequence[ProviderEvent],
    *,
    channel: Channel,
    keyring: Keyring,
    now: datetime,
    devices: Mapping[str, uuid.UUID] | None = None,
) -> IngestResult:
    """Apply a batch of verified events from one provider; idempotent per event id."""
    result = IngestResult(received=len(events))
    fresh = await _unseen(session, channel, events)
    result.duplicates = len(events) - len(fresh)
    statuses = [e for e in fresh if isinstance(e, StatusEvent)]
    await _apply_statuses(session, channel, statuses, now=now, result=result)
    inbound = [e for e in fresh if isinstance(e, InboundMessage)]
    stops = await _record_replies(
        session, channel, inbound, keyring=keyring, now=now, devices=devices or {}, result=result
    )
    provider_opt_outs = [e for e in fresh if isinstance(e, OptOutEvent)]
    blocked = await _opt_out_senders(session, channel, provider_opt_outs, keyring=keyring)
    await _opt_out(
        session, channel, stops | blocked, confirm=stops, keyring=keyring, now=now, result=result
    )
    await _mark_seen(session, channel, fresh, now=now)
    return result


async def _unseen(
    session: AsyncSession, channel: Channel, events: Sequence[ProviderEvent]
) -> list[ProviderEvent]:
    unique: dict[str, ProviderEvent] = {}
    for event in events:
        unique.setdefault(event.event_id, event)
    if not unique:
        return []
    seen = await session.scalars(
        select(ProviderEventSeen.event_id).where(
            ProviderEventSeen.channel == channel, ProviderEventSeen.event_id.in_(list(unique))
        )
    )
    for event_id in seen.all():
        unique.pop(event_id, None)
    return list(unique.values())


async def _mark_seen(
    session: AsyncSession, channel: Channel, events: Sequence[ProviderEvent], *, now: datetime
) -> None:
    if events:
        rows = [{"channel": channel, "event_id": e.event_id, "received_at": now} for e in events]
        await session.execute(insert(ProviderEventSeen), rows)


def _message_id_from_key(key: str | None) -> uuid.UUID | None:
    """Our idempotency keys are ``<message id>:<attempt>``; providers echo them back."""
    if not key:
        return None
    try:
        return uuid.UUID(key.split(":", 1)[0])
    except ValueError:
        return None


async def _apply_statuses(
    session: AsyncSession,
    channel: Channel,
    statuses: Sequence[StatusEvent],
    *,
    now: datetime,
    result: IngestResult,
) -> None:
    """One guarded UPDATE per status kind, in lifecycle order: never moves a message back."""
    for status, target, kind in _STATUS_ORDER:
        batch = [s for s in statuses if s.status is status]
        if not batch:
            continue
        provider_ids = [s.provider_message_id for s in batch if s.provider_message_id]
        our_ids = [m for s in batch if (m := _message_id_from_key(s.message_key))]
        match = or_(
            and_(Message.channel == channel, Message.provider_message_id.in_(provider_ids)),
            Message.id.in_(our_ids),
        )
        values: dict[str, Any] = {"state": target, "updated_at": now}
        if target is MessageState.DELIVERED:
            values["delivered_at"] = now
        if target is MessageState.READ:
            values["read_at"] = now
        if target is MessageState.FAILED:
            values["last_error"] = next((s.error_reason for s in batch if s.error_reason), None)
        moved = (
            await session.execute(
                update(Message)
                .where(match, Message.state.in_(predecessors(target)))
                .values(**values)
                .returning(*_KEYS)
            )
        ).all()
        result.statuses_applied += len(moved)
        result.stale_statuses += len(batch) - len(moved)
        await dispatch_repository.insert_events(session, event_rows(kind, moved, at=now))


@dataclass(frozen=True, slots=True)
class _Conversation:
    prospect_id: uuid.UUID
    pm_id: uuid.UUID
    message: Any | None  # the last message row we sent them on this channel, if any


async def _conversations(
    session: AsyncSession,
    channel: Channel,
    senders: Iterable[str],
    *,
    keyring: Keyring,
    device_for: Mapping[str, uuid.UUID | None],
) -> dict[str, _Conversation]:
    """Map each sender handle to its conversation. A person known to several PMs belongs to
    the one whose message reached them last through the device they answered."""
    hashes = {keyring.identity_hash(channel.value, s): s for s in senders}
    if not hashes:
        return {}
    owners = (
        await session.execute(
            select(ProspectHandle.handle_hash, Prospect.id, Prospect.pm_id)
            .join(Prospect, Prospect.id == ProspectHandle.prospect_id)
            .where(
                ProspectHandle.channel == channel,
                ProspectHandle.handle_hash.in_(list(hashes)),
                Prospect.erased_at.is_(None),
            )
        )
    ).all()
    prospects_of: dict[str, list[tuple[uuid.UUID, uuid.UUID]]] = defaultdict(list)
    for handle_hash, prospect_id, pm_id in owners:
        prospects_of[hashes[handle_hash]].append((prospect_id, pm_id))
    latest = await _latest_messages(
        session, channel, [p for ps in prospects_of.values() for p, _ in ps]
    )
    found = {}
    for sender, candidates in prospects_of.items():
        found[sender] = _choose(candidates, latest, device_for.get(sender))
    return found


async def _latest_messages(
    session: AsyncSession, channel: Channel, prospect_ids: list[uuid.UUID]
) -> dict[uuid.UUID, Any]:
    if not prospect_ids:
        return {}
    rows = (
        await session.execute(
            select(*_KEYS, Message.sent_at, Message.created_at)
            .where(Message.prospect_id.in_(prospect_ids), Message.channel == channel)
            .where(Message.state.not_in((MessageState.QUEUED, MessageState.CANCELLED)))
            .order_by(Message.created_at)
        )
    ).all()
    return {row.prospect_id: row for row in rows}  # the last one per prospect wins


def _choose(
    candidates: list[tuple[uuid.UUID, uuid.UUID]],
    latest: Mapping[uuid.UUID, Any],
    device_id: uuid.UUID | None,
) -> _Conversation:
    def rank(candidate: tuple[uuid.UUID, uuid.UUID]) -> tuple[bool, float]:
        message = latest.get(candidate[0])
        if message is None:
            return (False, 0.0)
        return (message.device_id == device_id, message.created_at.timestamp())

    prospect_id, pm_id = max(candidates, key=rank)
    return _Conversation(prospect_id, pm_id, latest.get(prospect_id))


async def _record_replies(
    session: AsyncSession,
    channel: Channel,
    inbound: Sequence[InboundMessage],
    *,
    keyring: Keyring,
    now: datetime,
    devices: Mapping[str, uuid.UUID],
    result: IngestResult,
) -> set[uuid.UUID]:
    """Store each reply in its conversation and log a ``replied`` event; return who said STOP."""
    if not inbound:
        return set()
    senders = {e.event_id: normalise_sender(channel, e.sender) for e in inbound}
    device_for = {senders[e.event_id]: devices.get(e.device_address) for e in inbound}
    conversations = await _conversations(
        session, channel, senders.values(), keyring=keyring, device_for=device_for
    )
    keys = await _data_keys(session, {c.prospect_id for c in conversations.values()}, keyring)
    rows, events, stops = [], [], set()
    for event in inbound:
        conversation = conversations.get(senders[event.event_id])
        stop = is_stop_request(event.text)
        rows.append(_inbound_row(event, channel, conversation, keys, devices, stop=stop))
        if conversation is None:
            result.unmatched_replies += 1
            continue
        result.replies += 1
        events.append(_replied_event(event, channel, conversation, devices, now=now, stop=stop))
        if stop:
            stops.add(conversation.prospect_id)
    await session.execute(insert(InboundRow), rows)
    await dispatch_repository.insert_events(session, events)
    return stops


async def _data_keys(
    session: AsyncSession, prospect_ids: set[uuid.UUID], keyring: Keyring
) -> dict[uuid.UUID, Any]:
    if not prospect_ids:
        return {}
    rows = await session.execute(
        select(Prospect.id, Prospect.wrapped_key).where(Prospect.id.in_(list(prospect_ids)))
    )
    return {pid: keyring.unwrap(wrapped) for pid, wrapped in rows.all() if wrapped is not None}


def _inbound_row(
    event: InboundMessage,
    channel: Channel,
    conversation: _Conversation | None,
    keys: Mapping[uuid.UUID, Any],
    devices: Mapping[str, uuid.UUID],
    *,
    stop: bool,
) -> dict[str, Any]:
    row_id = uuid.uuid4()
    key = keys.get(conversation.prospect_id) if conversation else None
    return {
        "id": row_id,
        "at": event.at,
        "channel": channel,
        "event_id": event.event_id,
        "device_id": devices.get(event.device_address),
        "prospect_id": conversation.prospect_id if conversation else None,
        "pm_id": conversation.pm_id if conversation else None,
        "in_reply_to": conversation.message.id if conversation and conversation.message else None,
        "text_enc": key.seal(f"inbound:{row_id}", event.text) if key else None,
        "text_sha256": body_digest(event.text),
        "is_stop": stop,
    }


def _replied_event(
    event: InboundMessage,
    channel: Channel,
    conversation: _Conversation,
    devices: Mapping[str, uuid.UUID],
    *,
    now: datetime,
    stop: bool,
) -> dict[str, Any]:
    message = conversation.message
    return {
        "at": now,
        "kind": EventKind.REPLIED,
        "campaign_id": message.campaign_id if message else None,
        "variant": message.variant if message else None,
        "channel": channel,
        "device_id": devices.get(event.device_address),
        "prospect_id": conversation.prospect_id,
        "pm_id": conversation.pm_id,
        "message_id": message.id if message else None,
        "details": {"stop": stop, "provider_event_id": event.event_id},
    }


async def _opt_out_senders(
    session: AsyncSession, channel: Channel, events: Sequence[OptOutEvent], *, keyring: Keyring
) -> set[uuid.UUID]:
    """Prospects behind provider-reported opt-outs (a blocked bot, WhatsApp marketing stop)."""
    if not events:
        return set()
    hashes = [
        keyring.identity_hash(channel.value, normalise_sender(channel, e.sender)) for e in events
    ]
    rows = await session.scalars(
        select(ProspectHandle.prospect_id).where(
            ProspectHandle.channel == channel, ProspectHandle.handle_hash.in_(hashes)
        )
    )
    return set(rows.all())


async def _opt_out(
    session: AsyncSession,
    channel: Channel,
    prospect_ids: set[uuid.UUID],
    *,
    confirm: set[uuid.UUID],
    keyring: Keyring,
    now: datetime,
    result: IngestResult,
) -> None:
    """Global opt-out: flag the prospects, cancel their queued messages, log and audit it.

    Whoever asked (``confirm``: they wrote a stop request) gets one confirmation, queued in the
    outbox on the channel and device they wrote to; a provider-reported opt-out (a block) gets
    none. Only a prospect's first opt-out confirms, so a repeated STOP queues nothing.
    """
    if not prospect_ids:
        return
    newly = (
        await session.execute(
            update(Prospect)
            .where(Prospect.id.in_(list(prospect_ids)), Prospect.opted_out.is_(False))
            .values(opted_out=True, opted_out_at=now, updated_at=now)
            .returning(Prospect.id, Prospect.pm_id)
        )
    ).all()
    for prospect_id, pm_id in sorted(newly):
        cancelled = await dispatch_repository.cancel_waiting(
            session, now=now, prospect_id=prospect_id, reason=f"opted out on {channel.value}"
        )
        session.add(
            Event(
                at=now,
                kind=EventKind.OPTED_OUT,
                channel=channel,
                prospect_id=prospect_id,
                pm_id=pm_id,
                details={"cancelled": cancelled},
            )
        )
        await audit.append(
            session,
            actor=f"provider:{channel.value}",
            action="prospect.opted_out",
            object_type="prospect",
            object_id=str(prospect_id),
            details={"channel": channel.value, "cancelled_messages": cancelled},
        )
        result.opted_out.append(prospect_id)
    await session.flush()
    asked = sorted((pid, pm_id) for pid, pm_id in newly if pid in confirm)
    devices = await _stop_devices(session, channel, [pid for pid, _ in asked])
    confirmations = [
        notices.opt_out_confirmation(pid, pm_id, channel, devices.get(pid)) for pid, pm_id in asked
    ]
    await notices.enqueue(session, confirmations, keyring=keyring, now=now)


async def _stop_devices(
    session: AsyncSession, channel: Channel, prospect_ids: list[uuid.UUID]
) -> dict[uuid.UUID, uuid.UUID]:
    """The device each prospect sent their stop request to (the latest, if several)."""
    if not prospect_ids:
        return {}
    rows = await session.execute(
        select(InboundRow.prospect_id, InboundRow.device_id)
        .where(
            InboundRow.prospect_id.in_(prospect_ids),
            InboundRow.channel == channel,
            InboundRow.is_stop.is_(True),
            InboundRow.device_id.is_not(None),
        )
        .order_by(InboundRow.at)
    )
    return {pid: device_id for pid, device_id in rows if pid is not None and device_id is not None}
