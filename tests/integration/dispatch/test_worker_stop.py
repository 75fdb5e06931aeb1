"""STOP on Signal, end to end on SQLite and PostgreSQL: the reply goes through the inbound
ingestion, the prospect's queued WhatsApp message is cancelled, exactly one confirmation goes
out through the outbox (on Signal, through the device they wrote to), a repeated STOP adds
nothing, and a later campaign skips them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from mcep.auth.models import Role
from mcep.channels.base import InboundMessage, Platform
from mcep.contacts import service as contacts_service
from mcep.contacts.models import Channel, Prospect
from mcep.contacts.schemas import ConsentIn, ProspectCreate
from mcep.dispatch.models import Message, MessageKind, MessageState
from mcep.dispatch.notices import OPT_OUT_CONFIRMATION, OPT_OUT_CONFIRMATION_TEXT
from mcep.inbound import service as inbound
from mcep.runtime import Runtime
from tests.conftest import Actor, make_actor
from tests.integration.campaigns import builders
from tests.integration.dispatch import world
from tests.integration.dispatch.world import T0, Clock

PHONE = "+33612345678"


async def _prospect(runtime: Runtime, pm: Actor) -> uuid.UUID:
    """Reachable on WhatsApp and Signal (one phone number), consented on both."""
    assert pm.pm_id is not None
    prepared = contacts_service.prepare(
        ProspectCreate(
            name="Ana Example",
            phone=PHONE,
            timezone="Europe/Paris",
            consents=[
                ConsentIn(channel=Channel.SIGNAL, source="form"),
                ConsentIn(channel=Channel.WHATSAPP, source="form"),
            ],
        ),
        pm_id=pm.pm_id,
        keyring=runtime.keyring,
        now=datetime.now(UTC),
    )
    async with runtime.sessions() as session, session.begin():
        await contacts_service.insert_prepared(session, [prepared])
    return uuid.UUID(str(prepared.prospect["id"]))


async def _stop(runtime: Runtime, device_id: uuid.UUID, address: str, n: int, at: datetime) -> None:
    event = InboundMessage(
        event_id=f"signal:{address}:{PHONE}:message:{n}",
        sender=PHONE,
        device_address=address,
        text="Stop",
        at=at,
    )
    async with runtime.sessions() as session, session.begin():
        await inbound.ingest(
            session,
            [event],
            channel=Channel.SIGNAL,
            keyring=runtime.keyring,
            now=at,
            devices={address: device_id},
        )


async def test_stop_on_signal_cancels_whatsapp_confirms_once_and_later_campaigns_skip(
    runtime: Runtime,
) -> None:
    pm = await make_actor(runtime, Role.PM)
    async with world.sandbox() as box:
        signal_device = await world.add_device(runtime, box.url, Platform.SIGNAL)
        await world.add_device(runtime, box.url, Platform.WHATSAPP)
        prospect_id = await _prospect(runtime, pm)
        first = await world.launch(
            runtime, pm, [prospect_id], now=T0, channel_order=["signal", "whatsapp"]
        )
        second = await world.launch(
            runtime,
            pm,
            [prospect_id],
            now=T0,
            start_at=T0 + timedelta(hours=3),
            channel_order=["whatsapp"],
            cap_per_day=5,
            cap_per_week=5,
        )
        clock = Clock()
        worker = world.dispatcher(runtime, box, clock=clock)
        assert (await world.run(worker)).states == {MessageState.SENT: 1}

        clock.set(T0 + timedelta(minutes=5))
        address = world.device_spec(Platform.SIGNAL, 0).address
        await _stop(runtime, signal_device, address, 1, clock())
        (whatsapp,) = await world.messages(runtime, Message.campaign_id == second)
        assert (whatsapp.channel, whatsapp.state) == (Channel.WHATSAPP, MessageState.CANCELLED)
        (notice,) = await world.messages(runtime, Message.kind == MessageKind.NOTICE)
        assert (notice.campaign_id, notice.channel, notice.device_id, notice.variant) == (
            None,
            Channel.SIGNAL,
            signal_device,
            OPT_OUT_CONFIRMATION,
        )

        assert (await world.run(worker)).states == {MessageState.SENT: 1}
        await _stop(runtime, signal_device, address, 2, clock())  # they say it again
        clock.set(T0 + timedelta(hours=4))
        assert (await world.run(worker)).claimed == 0

    (notice,) = await world.messages(runtime, Message.kind == MessageKind.NOTICE)
    assert notice.state is MessageState.SENT
    confirmations = [
        (key.platform, key.recipient, n)
        for key, n in box.state.ledger.counts().items()
        if key.message_key == OPT_OUT_CONFIRMATION_TEXT
    ]
    assert confirmations == [("signal", PHONE, 1)]
    assert box.state.ledger.total == 2  # the first campaign's message and the confirmation
    async with runtime.sessions() as session:
        prospect = await session.get(Prospect, prospect_id)
    assert prospect is not None and prospect.opted_out
    assert (await world.states(runtime, first)) == {MessageState.SENT: 1}

    later = await builders.add_campaign(runtime, pm, prospect_ids=[prospect_id])
    launched = await builders.launch_campaign(runtime, pm, later, now=T0 + timedelta(days=2))
    assert launched.launch_result["queued"] == 0
    assert launched.launch_result["skip_reasons"] == {"opted_out": 1}
