"""A 1,000-recipient campaign over the four channels, on SQLite and PostgreSQL: launched, then
drained by the worker's jobs (``run_worker``, as ``mcep worker`` and ``mcep serve`` run them)
through the real adapters and the sandbox over loopback HTTP. Every consented recipient is
sent exactly once, as the sandbox counts it; the ones without consent are skipped with their
reason; the campaign completes."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from sqlalchemy import select

from mcep.auth.models import Role
from mcep.campaigns.models import Campaign, CampaignStatus
from mcep.channels.base import Platform
from mcep.contacts.models import Channel
from mcep.dispatch.models import Message, MessageState
from mcep.runtime import Runtime
from mcep.worker.process import run_worker
from tests.conftest import make_actor
from tests.integration.campaigns import builders
from tests.integration.dispatch import world

RECIPIENTS = 1000
CHANNELS = [Channel.WHATSAPP, Channel.WHATSAPP, Channel.IMESSAGE, Channel.TELEGRAM, Channel.SIGNAL]


async def _campaign_status(runtime: Runtime, campaign_id: object) -> CampaignStatus:
    async with runtime.sessions() as session:
        campaign = await session.get(Campaign, campaign_id)
        assert campaign is not None
        return campaign.status


async def test_a_thousand_recipients_drain_each_sent_exactly_once(runtime: Runtime) -> None:
    pm = await make_actor(runtime, Role.PM)
    async with world.sandbox() as box:
        for platform in Platform:
            for n in range(2):
                await world.add_device(runtime, box.url, platform, n)
        consented = await world.add_prospects(runtime, pm, CHANNELS, RECIPIENTS)
        unconsented = await world.add_prospects(
            runtime, pm, CHANNELS, 10, start=RECIPIENTS, consent=False
        )
        profile = await builders.add_profile(runtime, pm, window_start="00:00", window_end="00:00")
        template = await builders.add_template(runtime, pm, "Hello {{ name }}")
        campaign_id = await builders.add_campaign(
            runtime,
            pm,
            prospect_ids=consented + unconsented,
            template_id=template,
            profile_id=profile,
        )
        started = time.perf_counter()
        campaign = await builders.launch_campaign(runtime, pm, campaign_id)
        launched = time.perf_counter() - started
        assert campaign.launch_result["queued"] == RECIPIENTS
        assert campaign.launch_result["skip_reasons"] == {"no_consent": 10}

        stop = asyncio.Event()
        worker = asyncio.create_task(
            run_worker(runtime, jobs=["dispatch", "leases"], adapters=box.adapters, stop=stop)
        )
        started = time.perf_counter()
        try:
            deadline = started + 120
            while await _campaign_status(runtime, campaign_id) is not CampaignStatus.COMPLETED:
                assert time.perf_counter() < deadline, "the campaign did not drain in 120 s"
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await worker
        drained = time.perf_counter() - started

    async with runtime.sessions() as session:
        rows = (
            await session.execute(
                select(Message.id, Message.channel, Message.state).where(
                    Message.campaign_id == campaign_id
                )
            )
        ).all()
    assert Counter(state for _, _, state in rows) == {MessageState.SENT: RECIPIENTS}
    accepted = box.accepted()
    assert set(accepted.values()) == {1}, "a message was accepted more than once"
    assert sum(accepted.values()) == RECIPIENTS
    echoed = {str(m) for m, channel, _ in rows if channel in (Channel.WHATSAPP, Channel.IMESSAGE)}
    assert echoed <= set(accepted)  # WhatsApp and iMessage echo our key: all of them came back
    print(
        f"\n1,000-recipient campaign on {runtime.engine.dialect.name}: launched in "
        f"{launched * 1000:.0f} ms, drained through the sandbox in {drained:.2f} s "
        f"({RECIPIENTS / drained:.0f} msg/s)"
    )
