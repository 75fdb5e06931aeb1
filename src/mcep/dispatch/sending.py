"""From a claimed message to a provider's answer: the facts a batch needs, read in bulk; the
outbound message (recipient handle and body opened under the prospect's own key, text or
WhatsApp template) with the rate limits it must pass (see :mod:`mcep.dispatch.budget`); and
the send itself.

The 24-hour rule: WhatsApp lets a business send free text only within 24 hours of the
person's last message to it; outside that window only an approved template may open the
conversation. A message whose recipient has not written to us on WhatsApp in the last 24
hours goes out as its template when it has one; a text refused for the window (131047) is
tried once more as the template.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from mcep.campaigns.models import Campaign, EngagementProfile
from mcep.campaigns.rules import ProfileRules, rules_of
from mcep.channels.base import (
    ChannelAdapter,
    DeviceRef,
    OutboundMessage,
    PermanentFailure,
    Platform,
    RetryLater,
)
from mcep.contacts.crypto import DataKey, Keyring
from mcep.contacts.models import Channel, ConsentStatus, Prospect, ProspectConsent
from mcep.dispatch.content import MessageContent, open_content
from mcep.dispatch.models import MessageKind
from mcep.dispatch.outcomes import Attempted, NeedsDevice, Refused
from mcep.dispatch.rates import Check, send_checks
from mcep.dispatch.repository import ClaimedMessage
from mcep.fleet.models import Device, DeviceStatus
from mcep.fleet.service import device_ref
from mcep.inbound.models import InboundMessage

log = logging.getLogger(__name__)
WHATSAPP_WINDOW = timedelta(hours=24)


# --- the facts of a batch ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recipient:
    wrapped_key: bytes | None
    handles_enc: bytes | None
    opted_out: bool
    erased: bool
    timezone: str


@dataclass(frozen=True, slots=True)
class Sender:
    ref: DeviceRef
    status: DeviceStatus
    rate_per_minute: int | None


@dataclass
class BatchFacts:
    """Everything the batch's sends depend on, read in a handful of statements."""

    recipients: dict[uuid.UUID, Recipient] = field(default_factory=dict)
    consented: set[tuple[uuid.UUID, Channel]] = field(default_factory=set)
    senders: dict[uuid.UUID, Sender] = field(default_factory=dict)
    rules: dict[uuid.UUID, ProfileRules] = field(default_factory=dict)
    whatsapp_window: set[uuid.UUID] = field(default_factory=set)
    """Prospects who wrote to us on WhatsApp in the last 24 hours."""

    def rules_for(self, campaign_id: uuid.UUID | None) -> ProfileRules:
        return self.rules.get(campaign_id, ProfileRules()) if campaign_id else ProfileRules()


class TokenCache:
    """Device tokens unsealed once per worker, until the sealed token changes."""

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring
        self._refs: dict[uuid.UUID, tuple[bytes, DeviceRef]] = {}

    def ref(self, device: Device) -> DeviceRef:
        cached = self._refs.get(device.id)
        if cached is not None and cached[0] == device.token_enc:
            ref = cached[1]
            if (ref.base_url, ref.address, dict(ref.options)) == (
                device.base_url,
                device.address,
                device.options,
            ):
                return ref
        ref = device_ref(device, self._keyring)
        self._refs[device.id] = (device.token_enc, ref)
        return ref


async def load_facts(
    session: AsyncSession,
    claimed: Sequence[ClaimedMessage],
    *,
    tokens: TokenCache,
    now: datetime,
) -> BatchFacts:
    """Recipients, consents, devices, retry rules and WhatsApp windows of a batch (five reads)."""
    connection = await session.connection()  # Core reads: no ORM bookkeeping on the hot path
    prospect_ids = sorted({m.prospect_id for m in claimed})
    whatsapp = sorted({m.prospect_id for m in claimed if m.channel is Channel.WHATSAPP})
    return BatchFacts(
        recipients=await _recipients(connection, prospect_ids),
        consented=await _consented(connection, prospect_ids),
        senders=await _senders(session, claimed, tokens),
        rules=await _rules(session, {m.campaign_id for m in claimed if m.campaign_id}),
        whatsapp_window=await _wrote_lately(connection, whatsapp, since=now - WHATSAPP_WINDOW),
    )


async def _recipients(
    connection: AsyncConnection, prospect_ids: list[uuid.UUID]
) -> dict[uuid.UUID, Recipient]:
    rows = await connection.execute(
        select(
            Prospect.id,
            Prospect.wrapped_key,
            Prospect.handles_enc,
            Prospect.opted_out,
            Prospect.erased_at,
            Prospect.timezone,
        ).where(Prospect.id.in_(prospect_ids))
    )
    return {
        row.id: Recipient(
            row.wrapped_key, row.handles_enc, row.opted_out, row.erased_at is not None, row.timezone
        )
        for row in rows
    }


async def _consented(
    connection: AsyncConnection, prospect_ids: list[uuid.UUID]
) -> set[tuple[uuid.UUID, Channel]]:
    rows = await connection.execute(
        select(ProspectConsent.prospect_id, ProspectConsent.channel).where(
            ProspectConsent.prospect_id.in_(prospect_ids),
            ProspectConsent.status == ConsentStatus.GRANTED,
        )
    )
    return {(pid, channel) for pid, channel in rows}


async def _senders(
    session: AsyncSession, claimed: Sequence[ClaimedMessage], tokens: TokenCache
) -> dict[uuid.UUID, Sender]:
    device_ids = sorted({m.device_id for m in claimed if m.device_id is not None})
    if not device_ids:
        return {}
    devices = await session.scalars(select(Device).where(Device.id.in_(device_ids)))
    return {d.id: Sender(tokens.ref(d), d.status, d.rate_per_minute) for d in devices.all()}


async def _wrote_lately(
    connection: AsyncConnection, prospect_ids: list[uuid.UUID], *, since: datetime
) -> set[uuid.UUID]:
    """The prospects who wrote to us on WhatsApp since ``since``."""
    if not prospect_ids:
        return set()
    rows = await connection.scalars(
        select(InboundMessage.prospect_id)
        .where(
            InboundMessage.prospect_id.in_(prospect_ids),
            InboundMessage.channel == Channel.WHATSAPP,
            InboundMessage.at >= since,
        )
        .distinct()
    )
    return {pid for pid in rows.all() if pid is not None}


async def _rules(
    session: AsyncSession, campaign_ids: set[uuid.UUID]
) -> dict[uuid.UUID, ProfileRules]:
    if not campaign_ids:
        return {}
    rows = await session.execute(
        select(Campaign.id, EngagementProfile)
        .outerjoin(EngagementProfile, EngagementProfile.id == Campaign.profile_id)
        .where(Campaign.id.in_(sorted(campaign_ids)))
    )
    return {campaign_id: rules_of(profile) for campaign_id, profile in rows}


# --- preparing one message -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Prepared:
    """One message ready to go: the device, the text and (if any) the template form."""

    claimed: ClaimedMessage
    device: DeviceRef
    text: OutboundMessage
    template: OutboundMessage | None
    template_first: bool
    checks: list[Check]


def prepare(
    message: ClaimedMessage,
    facts: BatchFacts,
    *,
    keyring: Keyring,
    pm_limit: str | None = None,
    keys: dict[uuid.UUID, DataKey] | None = None,
) -> Prepared | Refused | NeedsDevice:
    """The outbound message, or why it can't (or must not) be sent as it stands."""
    recipient = facts.recipients.get(message.prospect_id)
    if recipient is None or recipient.erased or recipient.wrapped_key is None:
        return Refused("the prospect was erased", "erased")
    notice = message.kind is MessageKind.NOTICE
    # A notice (the opt-out confirmation) is the one message allowed after an opt-out.
    if not notice and recipient.opted_out:
        return Refused("the prospect opted out", "opted_out")
    if not notice and (message.prospect_id, message.channel) not in facts.consented:
        return Refused(f"no consent on {message.channel.value}", "no_consent")
    sender = facts.senders.get(message.device_id) if message.device_id else None
    if sender is None or sender.status is not DeviceStatus.ACTIVE:
        state = "gone" if sender is None else sender.status.value
        return NeedsDevice(f"the message's device is {state}")
    key = keys.get(message.prospect_id) if keys is not None else None
    if key is None:
        key = keyring.unwrap(recipient.wrapped_key)
        if keys is not None:
            keys[message.prospect_id] = key
    handle = _handle(recipient, key, message.channel)
    if handle is None:
        return Refused(f"the prospect has no {message.channel.value} handle", "no_handle")
    if message.content_enc is None:
        return Refused("the message has no content", "no_content")
    content = open_content(message.content_enc, key=key, message_id=message.id)
    return _prepared(message, sender, handle, content, facts, pm_limit=pm_limit)


def _handle(recipient: Recipient, key: DataKey, channel: Channel) -> str | None:
    if recipient.handles_enc is None:
        return None
    handles: dict[str, str] = json.loads(key.open("handles", recipient.handles_enc))
    return handles.get(channel.value)


def _prepared(
    message: ClaimedMessage,
    sender: Sender,
    handle: str,
    content: MessageContent,
    facts: BatchFacts,
    *,
    pm_limit: str | None,
) -> Prepared:
    text = OutboundMessage(key=message.key, recipient=handle, body=content.body)
    template = None
    if message.channel is Channel.WHATSAPP and content.whatsapp_template is not None:
        template = OutboundMessage(
            key=message.key,
            recipient=handle,
            body=content.body,
            template=content.whatsapp_template,
        )
    checks = send_checks(
        platform=Platform(message.channel.value),
        device_id=uuid.UUID(sender.ref.id),
        prospect_id=message.prospect_id,
        pm_id=message.pm_id,
        rate_per_minute=sender.rate_per_minute,
        pm_limit=pm_limit,
    )
    outside = message.prospect_id not in facts.whatsapp_window
    return Prepared(message, sender.ref, text, template, template is not None and outside, checks)


# --- sending -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sent:
    """What came of one prepared message, and whether it went as the WhatsApp template."""

    prepared: Prepared
    attempted: Attempted
    template: bool = False


async def send_prepared(
    prepared: Prepared, adapter: ChannelAdapter, *, send_timeout: float
) -> Sent:
    """Send one message the rate limits admitted (text or template, see the module's note)."""
    first = prepared.template if prepared.template_first else prepared.text
    assert first is not None
    result = await _send(adapter, first, prepared.device, send_timeout=send_timeout)
    used_template = prepared.template_first
    if (
        isinstance(result, PermanentFailure)
        and result.needs_template
        and prepared.template is not None
        and not used_template
    ):
        result = await _send(adapter, prepared.template, prepared.device, send_timeout=send_timeout)
        used_template = True
    return Sent(prepared, result, used_template)


async def _send(
    adapter: ChannelAdapter, message: OutboundMessage, device: DeviceRef, *, send_timeout: float
) -> Attempted:
    try:
        async with asyncio.timeout(send_timeout):
            return await adapter.send(message, device)
    except TimeoutError:
        return RetryLater(
            reason=f"no answer from the provider within {send_timeout:.0f} s", code="timeout"
        )
    except Exception as exc:  # an adapter bug must not lose the batch's other outcomes
        log.exception("the %s adapter raised", adapter.platform.value)
        return RetryLater(reason=f"adapter error: {type(exc).__name__}", code="adapter_error")


def adapters_for(
    adapters: Mapping[Platform, ChannelAdapter], channel: Channel
) -> ChannelAdapter | None:
    return adapters.get(Platform(channel.value))
