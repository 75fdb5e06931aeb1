"""WhatsApp's 24-hour rule, on SQLite and PostgreSQL: free text only to someone who wrote to
us in the last 24 hours, the approved template otherwise, and a text refused for the window
(131047) sent once more as the template. A recording adapter stands in for the provider, so
the test sees exactly what went out."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select

from mcep.auth.models import Role
from mcep.channels.base import (
    Accepted,
    ChannelAdapter,
    DeviceRef,
    Health,
    HealthStatus,
    OutboundMessage,
    PermanentFailure,
    Platform,
    SendResult,
)
from mcep.contacts.models import Channel
from mcep.dispatch.content import body_digest
from mcep.dispatch.models import Event, MessageState
from mcep.inbound.models import InboundMessage
from mcep.runtime import Runtime
from tests.conftest import make_actor
from tests.integration.dispatch import world
from tests.integration.dispatch.world import T0, Clock

TEMPLATE = {"name": "intro_offer", "language": "en_GB", "parameters": ["{{ first_name }}"]}


@dataclass
class RecordingWhatsApp:
    """Accepts everything but free text to ``outside`` (as if their window had closed)."""

    outside: set[str] = field(default_factory=set)
    sent: list[OutboundMessage] = field(default_factory=list)
    platform: Platform = Platform.WHATSAPP

    async def send(self, message: OutboundMessage, device: DeviceRef) -> SendResult:
        self.sent.append(message)
        if message.template is None and message.recipient in self.outside:
            return PermanentFailure(
                reason="(#131047) Re-engagement message", code="131047", needs_template=True
            )
        return Accepted(provider_message_id=f"wamid.{len(self.sent)}")

    async def probe(self, device: DeviceRef) -> Health:
        return Health(HealthStatus.OK)


async def _wrote_to_us(runtime: Runtime, prospect_id: uuid.UUID, pm_id: uuid.UUID) -> None:
    async with runtime.sessions() as session, session.begin():
        session.add(
            InboundMessage(
                at=T0 - timedelta(hours=1),
                channel=Channel.WHATSAPP,
                event_id=f"wamid.in.{prospect_id}",
                prospect_id=prospect_id,
                pm_id=pm_id,
                text_sha256=body_digest("hi"),
            )
        )


async def test_template_outside_the_window_text_inside_and_131047_retried_as_template(
    runtime: Runtime,
) -> None:
    pm = await make_actor(runtime, Role.PM)
    assert pm.pm_id is not None
    await world.add_device(runtime, "http://127.0.0.1:9", Platform.WHATSAPP)
    cold, warm, closed = await world.add_prospects(runtime, pm, [Channel.WHATSAPP], 3)
    for prospect_id in (warm, closed):
        await _wrote_to_us(runtime, prospect_id, pm.pm_id)
    await world.launch(runtime, pm, [cold, warm, closed], now=T0, whatsapp=TEMPLATE)
    adapter = RecordingWhatsApp(outside={world.handle(Channel.WHATSAPP, 2)})
    adapters: dict[Platform, ChannelAdapter] = {Platform.WHATSAPP: adapter}
    report = await world.run(world.dispatcher(runtime, adapters, clock=Clock()))

    assert report.states == {MessageState.SENT: 3}
    went = [(m.recipient, m.template.name if m.template else "text") for m in adapter.sent]
    assert sorted(went) == sorted(
        [
            (world.handle(Channel.WHATSAPP, 0), "intro_offer"),  # cold: the template
            (world.handle(Channel.WHATSAPP, 1), "text"),  # wrote an hour ago: free text
            (world.handle(Channel.WHATSAPP, 2), "text"),  # refused for the window ...
            (world.handle(Channel.WHATSAPP, 2), "intro_offer"),  # ... then the template
        ]
    )
    parameters = {m.recipient: list(m.template.body_parameters) for m in adapter.sent if m.template}
    assert parameters[world.handle(Channel.WHATSAPP, 0)] == ["Client0"]
    assert len({m.key for m in adapter.sent}) == 3  # one attempt key per message
    async with runtime.sessions() as session:
        sent = (await session.scalars(select(Event).where(Event.kind == "sent"))).all()
    templated = {e.prospect_id for e in sent if e.details.get("template")}
    assert templated == {cold, closed}
