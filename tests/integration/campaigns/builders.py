"""Builders for campaign tests: prospects in bulk, devices, templates, campaigns, launches.

They go through the real services (so rows are what the API would write) in their own
committed transactions, as separate requests would.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update

from mcep.auth.models import Role
from mcep.auth.principal import Principal
from mcep.campaigns import launch, service
from mcep.campaigns.models import Campaign
from mcep.campaigns.schemas import CampaignCreate, ProfileCreate, TemplateCreate
from mcep.channels.base import Platform
from mcep.contacts import service as contacts_service
from mcep.contacts.schemas import ConsentIn, Handles, ProspectCreate
from mcep.dispatch.models import Message, MessageState
from mcep.fleet import service as fleet_service
from mcep.fleet.schemas import DeviceCreate
from mcep.runtime import Runtime
from tests.conftest import Actor

# Distinct numbers for every prospect a test process builds (random ones collide: a PM's
# numbers are unique).
_PHONES = itertools.count(uuid.uuid4().int % 10**5)
ADMIN = Principal(uuid.uuid4(), "fleet-admin@example.com", Role.ADMIN)


def principal(actor: Actor) -> Principal:
    return Principal(actor.user_id, actor.email, actor.role, actor.pm_id)


def telegram_id() -> str:
    return str(uuid.uuid4().int % 10**12)


async def add_prospects(
    runtime: Runtime,
    owner: Actor,
    count: int,
    *,
    timezone: str = "Europe/London",
    consents: Sequence[str] = ("telegram",),
    phone: bool = False,
    attributes: dict[str, Any] | None = None,
) -> list[uuid.UUID]:
    """``count`` prospects with a Telegram handle (and a phone when asked), in one batch."""
    now = datetime.now(UTC)
    batch = []
    for i in range(count):
        data = ProspectCreate(
            name=f"Client {i} Example",
            phone=f"+4420794{next(_PHONES) % 10**5:05d}" if phone else None,
            timezone=timezone,
            handles=Handles(telegram=telegram_id()),
            consents=[ConsentIn(channel=c, source="test") for c in consents],
            attributes=attributes or {"segment": "hnw"},
        )
        pm_id = owner.pm_id
        assert pm_id is not None
        batch.append(contacts_service.prepare(data, pm_id=pm_id, keyring=runtime.keyring, now=now))
    async with runtime.sessions() as session, session.begin():
        await contacts_service.insert_prepared(session, batch)
    return [p.prospect["id"] for p in batch]


async def add_device(
    runtime: Runtime, platform: Platform = Platform.TELEGRAM, **fields: Any
) -> uuid.UUID:
    data = DeviceCreate(
        platform=platform,
        address=fields.pop("address", f"dev-{uuid.uuid4().hex[:10]}"),
        base_url=fields.pop("base_url", "http://127.0.0.1:9/"),
        token=fields.pop("token", "secret-token"),
        **fields,
    )
    async with runtime.sessions() as session, session.begin():
        device = await fleet_service.create(session, ADMIN, data, keyring=runtime.keyring)
    return device.id


async def add_template(
    runtime: Runtime, owner: Actor, body: str = "Hello {{ first_name }}", **fields: Any
) -> uuid.UUID:
    data = TemplateCreate(name=f"t-{uuid.uuid4().hex[:8]}", body=body, **fields)
    async with runtime.sessions() as session, session.begin():
        return (await service.create_template(session, principal(owner), data)).id


async def add_profile(runtime: Runtime, owner: Actor, **fields: Any) -> uuid.UUID:
    data = ProfileCreate(name=f"p-{uuid.uuid4().hex[:8]}", **fields)
    async with runtime.sessions() as session, session.begin():
        return (await service.create_profile(session, principal(owner), data)).id


async def add_campaign(
    runtime: Runtime,
    owner: Actor,
    *,
    prospect_ids: Sequence[uuid.UUID] | None = None,
    audience: dict[str, Any] | None = None,
    template_id: uuid.UUID | None = None,
    **fields: Any,
) -> uuid.UUID:
    if template_id is None and "variants" not in fields:
        template_id = await add_template(runtime, owner)
    body: dict[str, Any] = {
        "name": f"c-{uuid.uuid4().hex[:8]}",
        "template_id": template_id,
        "audience": audience or {"prospect_ids": [str(p) for p in prospect_ids or []]},
        **fields,
    }
    async with runtime.sessions() as session, session.begin():
        campaign = await service.create_campaign(
            session, principal(owner), CampaignCreate.model_validate(body)
        )
    return campaign.id


async def launch_campaign(
    runtime: Runtime, owner: Actor, campaign_id: uuid.UUID, *, now: datetime | None = None
) -> Campaign:
    async with runtime.sessions() as session, session.begin():
        return await launch.launch(
            session,
            principal(owner),
            campaign_id,
            keyring=runtime.keyring,
            now=now or datetime.now(UTC),
        )


async def running_campaign(runtime: Runtime, owner: Actor, recipients: int = 1) -> uuid.UUID:
    """A launched campaign with ``recipients`` queued Telegram messages."""
    await add_device(runtime)
    prospects = await add_prospects(runtime, owner, recipients)
    campaign_id = await add_campaign(runtime, owner, prospect_ids=prospects)
    await launch_campaign(runtime, owner, campaign_id)
    return campaign_id


async def set_state(runtime: Runtime, campaign_id: uuid.UUID, state: MessageState) -> None:
    async with runtime.sessions() as session, session.begin():
        await session.execute(
            update(Message).where(Message.campaign_id == campaign_id).values(state=state)
        )


async def change(runtime: Runtime, owner: Actor, campaign_id: uuid.UUID, action: str) -> None:
    async with runtime.sessions() as session, session.begin():
        await service.change_status(
            session, principal(owner), campaign_id, action, now=datetime.now(UTC)
        )


async def message_ids(runtime: Runtime, campaign_id: uuid.UUID) -> list[uuid.UUID]:
    async with runtime.sessions() as session:
        stmt = select(Message.id).where(Message.campaign_id == campaign_id).order_by(Message.id)
        return list((await session.scalars(stmt)).all())
