"""Rows for inbound tests: a device, a prospect, a campaign and one message sent to them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from mcep.auth.principal import Principal
from mcep.campaigns.models import Campaign, CampaignStatus
from mcep.channels.base import Platform
from mcep.contacts import service as contacts_service
from mcep.contacts.models import Channel, Prospect
from mcep.contacts.schemas import ProspectCreate
from mcep.dispatch.models import Message, MessageState
from mcep.fleet.models import Device
from mcep.runtime import Runtime
from tests.conftest import Actor

PHONE = "+442079460958"


@dataclass
class World:
    pm: Actor
    prospect_id: uuid.UUID
    device_id: uuid.UUID
    campaign_id: uuid.UUID
    message_id: uuid.UUID


async def add_device(runtime: Runtime, platform: Platform, address: str) -> uuid.UUID:
    async with runtime.sessions() as session, session.begin():
        device = Device(
            platform=platform,
            address=address,
            base_url="http://127.0.0.1:9",
            token_key=b"k",
            token_enc=b"t",
        )
        session.add(device)
    return device.id


async def add_world(
    runtime: Runtime,
    pm: Actor,
    *,
    device_id: uuid.UUID,
    channel: Channel = Channel.WHATSAPP,
    state: MessageState = MessageState.SENT,
    wamid: str | None = "wamid.ONE",
) -> World:
    principal = Principal(pm.user_id, pm.email, pm.role, pm.pm_id)
    async with runtime.sessions() as session, session.begin():
        existing = await session.scalar(select(Prospect.id).where(Prospect.pm_id == pm.pm_id))
        if existing is None:
            prospect = await contacts_service.create(
                session,
                principal,
                ProspectCreate(
                    name="Ana",
                    phone=PHONE,
                    timezone="Europe/London",
                    consents=[{"channel": "whatsapp", "source": "form"}],
                ),  # type: ignore[list-item]
                keyring=runtime.keyring,
                default_region=None,
            )
            existing = prospect.id
        assert pm.pm_id is not None
        campaign = Campaign(
            pm_id=pm.pm_id, name="c", audience={"prospect_ids": []}, status=CampaignStatus.RUNNING
        )
        session.add(campaign)
        await session.flush()
        message = Message(
            campaign_id=campaign.id,
            pm_id=pm.pm_id,
            prospect_id=existing,
            variant="A",
            channel=channel,
            device_id=device_id,
            body_sha256="0" * 64,
            state=state,
            next_attempt_at=datetime.now(UTC),
            provider_message_id=wamid,
            sent_at=datetime.now(UTC) if state is MessageState.SENT else None,
        )
        session.add(message)
    return World(pm, existing, device_id, campaign.id, message.id)
