"""What the dispatch worker does with each kind of answer, on SQLite and PostgreSQL, through
the real adapters and the sandbox: device failures move the message to another device and
report the device; permanent failures fail with their reason (an opt-out opts the prospect
out everywhere); rate limits defer without counting a failure; a stale lease writes nothing."""

from __future__ import annotations

import itertools
from datetime import timedelta

from sqlalchemy import func, select, update

from mcep.audit.models import AuditEntry
from mcep.auth.models import Role
from mcep.campaigns.models import Campaign, CampaignStatus
from mcep.channels.base import ChannelAdapter, Platform
from mcep.contacts.models import Channel, Prospect
from mcep.dispatch import recording, repository
from mcep.dispatch.models import Event, Message, MessageAttempt, MessageState
from mcep.dispatch.outcomes import Decision
from mcep.dispatch.worker import LeaseSweeperJob
from mcep.fleet.models import Device, DeviceStatus
from mcep.runtime import Runtime
from mcep.sandbox.behaviour import Behaviour, DeviceBehaviour, RecipientBehaviour
from tests.conftest import make_actor
from tests.integration.dispatch import world
from tests.integration.dispatch.world import T0, Clock


async def _device(runtime: Runtime, device_id: object) -> Device:
    async with runtime.sessions() as session:
        device = await session.get(Device, device_id)
        assert device is not None
        return device


async def _audit(runtime: Runtime, action: str) -> list[AuditEntry]:
    async with runtime.sessions() as session:
        rows = await session.scalars(select(AuditEntry).where(AuditEntry.action == action))
        return list(rows.all())


async def test_a_banned_device_is_quarantined_and_its_message_moves_to_another(
    runtime: Runtime,
) -> None:
    pm = await make_actor(runtime, Role.PM)
    banned = world.device_spec(Platform.WHATSAPP, 0).ledger_device
    behaviour = Behaviour().with_device(banned, DeviceBehaviour(banned_at=0.0))
    async with world.sandbox(behaviour) as box:
        first = await world.add_device(runtime, box.url, Platform.WHATSAPP, 0)
        prospects = await world.add_prospects(runtime, pm, [Channel.WHATSAPP], 1)
        await world.launch(runtime, pm, prospects, now=T0)
        second = await world.add_device(runtime, box.url, Platform.WHATSAPP, 1)
        worker = world.dispatcher(runtime, box, clock=Clock())

        report = await world.run(worker)
        assert report.devices_reported == [first]
        (message,) = await world.messages(runtime)
        assert (message.state, message.device_id) == (MessageState.QUEUED, second)
        assert (message.failures, message.next_attempt_at) == (0, T0)
        assert (await world.run(worker)).states == {MessageState.SENT: 1}

    (message,) = await world.messages(runtime)
    assert message.state is MessageState.SENT
    (sent,) = box.state.ledger.counts()
    assert sent.device == world.device_spec(Platform.WHATSAPP, 1).ledger_device
    assert (await _device(runtime, first)).status is DeviceStatus.QUARANTINED
    (entry,) = await _audit(runtime, "device.quarantined")
    assert entry.object_id == str(first) and entry.details["code"] == "131031"
    async with runtime.sessions() as session:
        attempts = (
            await session.scalars(select(MessageAttempt).order_by(MessageAttempt.attempt))
        ).all()
        requeued = await session.scalar(select(Event).where(Event.kind == "requeued"))
    assert [(a.attempt, a.device_id, a.outcome) for a in attempts] == [
        (1, first, "device_failure"),
        (2, second, "accepted"),
    ]
    assert requeued is not None and requeued.device_id == second


async def test_a_refused_token_degrades_the_only_device_and_the_message_retries(
    runtime: Runtime,
) -> None:
    pm = await make_actor(runtime, Role.PM)
    async with world.sandbox(strict=True, tokens={"telegram": frozenset({"1:other"})}) as box:
        bot = await world.add_device(runtime, box.url, Platform.TELEGRAM)
        prospects = await world.add_prospects(runtime, pm, [Channel.TELEGRAM], 1)
        await world.launch(runtime, pm, prospects, now=T0)
        report = await world.run(world.dispatcher(runtime, box, clock=Clock()))
    assert report.devices_reported == [bot]
    assert (await _device(runtime, bot)).status is DeviceStatus.DEGRADED
    (message,) = await world.messages(runtime)
    assert (message.state, message.failures) == (MessageState.RETRY_SCHEDULED, 1)
    assert message.next_attempt_at == T0 + timedelta(minutes=1)
    assert message.last_error == "no active telegram device to send through"


async def test_a_permanent_failure_fails_with_the_providers_reason(runtime: Runtime) -> None:
    pm = await make_actor(runtime, Role.PM)
    absent = world.handle(Channel.TELEGRAM, 0)
    behaviour = Behaviour().with_recipient(absent, RecipientBehaviour(on_platform=False))
    async with world.sandbox(behaviour) as box:
        await world.add_device(runtime, box.url, Platform.TELEGRAM)
        prospects = await world.add_prospects(runtime, pm, [Channel.TELEGRAM], 2)
        campaign_id = await world.launch(runtime, pm, prospects, now=T0)
        report = await world.run(world.dispatcher(runtime, box, clock=Clock()))
    assert report.states == {MessageState.FAILED: 1, MessageState.SENT: 1}
    (failed,) = await world.messages(runtime, Message.state == MessageState.FAILED)
    assert failed.prospect_id == prospects[0]
    assert failed.last_error == "Bad Request: chat not found"
    async with runtime.sessions() as session:
        prospect = await session.get(Prospect, prospects[0])
        campaign = await session.get(Campaign, campaign_id)
    assert prospect is not None and not prospect.opted_out
    assert campaign is not None and campaign.status is CampaignStatus.COMPLETED
    assert report.completed == [campaign_id]


async def test_an_opted_out_answer_opts_the_prospect_out_everywhere(runtime: Runtime) -> None:
    pm = await make_actor(runtime, Role.PM)
    async with world.sandbox() as box:
        await world.add_device(runtime, box.url, Platform.TELEGRAM)
        (prospect_id,) = await world.add_prospects(runtime, pm, [Channel.TELEGRAM], 1)
        now_campaign = await world.launch(runtime, pm, [prospect_id], now=T0)
        later = await world.launch(
            runtime,
            pm,
            [prospect_id],
            now=T0,
            start_at=T0 + timedelta(hours=2),
            cap_per_day=5,
            cap_per_week=5,
        )
        spec = world.device_spec(Platform.TELEGRAM, 0)
        recipient = world.handle(Channel.TELEGRAM, 0)
        box.state.mark_opted_out(
            platform="telegram", device=spec.ledger_device, recipient=recipient
        )
        report = await world.run(world.dispatcher(runtime, box, clock=Clock()))
    assert report.opted_out == [prospect_id]
    (failed,) = await world.messages(runtime, Message.campaign_id == now_campaign)
    assert failed.state is MessageState.FAILED
    assert failed.last_error == "Forbidden: bot was blocked by the user"
    (cancelled,) = await world.messages(runtime, Message.campaign_id == later)
    assert cancelled.state is MessageState.CANCELLED
    async with runtime.sessions() as session:
        prospect = await session.get(Prospect, prospect_id)
        opted = (await session.scalars(select(Event).where(Event.kind == "opted_out"))).all()
    assert prospect is not None and prospect.opted_out
    assert [e.prospect_id for e in opted] == [prospect_id]
    assert len(await _audit(runtime, "prospect.opted_out")) == 1


async def test_a_rate_limited_message_waits_without_counting_a_failure(runtime: Runtime) -> None:
    pm = await make_actor(runtime, Role.PM)
    async with world.sandbox() as box:
        await world.add_device(runtime, box.url, Platform.WHATSAPP, rate_per_minute=2)
        prospects = await world.add_prospects(runtime, pm, [Channel.WHATSAPP], 5)
        await world.launch(runtime, pm, prospects, now=T0)
        report = await world.run(world.dispatcher(runtime, box, clock=Clock()))
    assert report.states == {MessageState.SENT: 2, MessageState.QUEUED: 3}
    waiting = await world.messages(runtime, Message.state == MessageState.QUEUED)
    assert {(m.failures, m.attempts) for m in waiting} == {(0, 1)}
    due = sorted(m.next_attempt_at for m in waiting)
    assert T0 + timedelta(seconds=55) < due[0] <= T0 + timedelta(seconds=61)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(due)]
    assert all(abs(gap - 30) < 1 for gap in gaps), gaps  # spaced at the device's rate
    async with runtime.sessions() as session:
        outcomes = [str(a) for a in (await session.scalars(select(MessageAttempt.outcome))).all()]
        kinds = (await session.scalars(select(Event.kind))).all()
    assert sorted(outcomes) == ["accepted"] * 2 + ["deferred"] * 3
    assert sorted(kinds) == ["queued"] * 5 + ["sent"] * 2  # a deferral is no state change


async def test_a_worker_whose_lease_passed_on_writes_nothing(runtime: Runtime) -> None:
    pm = await make_actor(runtime, Role.PM)
    async with world.sandbox() as box:
        await world.add_device(runtime, box.url, Platform.TELEGRAM)
        prospects = await world.add_prospects(runtime, pm, [Channel.TELEGRAM], 1)
        await world.launch(runtime, pm, prospects, now=T0)
    lease = timedelta(seconds=10)
    async with runtime.sessions() as session, session.begin():
        (old,) = await repository.claim_due(session, owner="slow", now=T0, lease=lease, limit=5)
    later = T0 + timedelta(seconds=11)
    async with runtime.sessions() as session, session.begin():
        assert await repository.release_expired(session, now=later) == 1
    async with runtime.sessions() as session, session.begin():
        (new,) = await repository.claim_due(session, owner="fast", now=later, lease=lease, limit=5)
    assert new.attempt == old.attempt + 1
    stale = Decision(old.id, old.attempt, MessageState.SENT, "accepted", 0, provider_message_id="x")
    async with runtime.sessions() as session, session.begin():
        assert await recording.lock_owned(session, [old.id], owner="slow") == {}
        assert await recording.apply_decisions(session, [stale], owner="slow", now=later) == []
    (message,) = await world.messages(runtime)
    assert (message.state, message.lease_owner, message.attempts) == (
        MessageState.SENDING,
        "fast",
        2,
    )


async def test_the_sweeper_completes_a_campaign_whose_last_message_was_cancelled(
    runtime: Runtime,
) -> None:
    pm = await make_actor(runtime, Role.PM)
    async with world.sandbox() as box:
        await world.add_device(runtime, box.url, Platform.TELEGRAM)
        sent_to, cancelled_for = await world.add_prospects(runtime, pm, [Channel.TELEGRAM], 2)
        campaign_id = await world.launch(runtime, pm, [sent_to, cancelled_for], now=T0)
        async with runtime.sessions() as session, session.begin():
            await session.execute(
                update(Message)
                .where(Message.prospect_id == cancelled_for)
                .values(next_attempt_at=T0 + timedelta(hours=1))
            )
        clock = Clock()
        worker = world.dispatcher(runtime, box, clock=clock)
        report = await world.run(worker)
    assert report.states == {MessageState.SENT: 1} and report.completed == []
    async with runtime.sessions() as session, session.begin():
        await repository.cancel_waiting(
            session, now=T0, prospect_id=cancelled_for, reason="opted out on telegram"
        )
    assert await _status(runtime, campaign_id) is CampaignStatus.RUNNING
    assert await LeaseSweeperJob().sweep(worker.context) == 0  # no lease to release
    assert await _status(runtime, campaign_id) is CampaignStatus.COMPLETED
    (entry,) = await _audit(runtime, "campaign.completed")
    assert entry.object_id == str(campaign_id)


async def _status(runtime: Runtime, campaign_id: object) -> CampaignStatus:
    async with runtime.sessions() as session:
        campaign = await session.get(Campaign, campaign_id)
        assert campaign is not None
        return campaign.status


async def test_a_batch_larger_than_one_statement_is_recorded_whole(runtime: Runtime) -> None:
    pm = await make_actor(runtime, Role.PM)
    await world.add_device(runtime, "http://127.0.0.1:9", Platform.TELEGRAM)
    prospects = await world.add_prospects(runtime, pm, [Channel.TELEGRAM], 1200)
    campaign_id = await world.launch(runtime, pm, prospects, now=T0)
    provider = world.AcceptAll(Platform.TELEGRAM)
    adapters: dict[Platform, ChannelAdapter] = {Platform.TELEGRAM: provider}
    worker = world.dispatcher(runtime, adapters, clock=Clock(), batch=1200)
    report = await world.run(worker)
    assert report.claimed == 1200 and report.states == {MessageState.SENT: 1200}
    assert report.completed == [campaign_id]
    assert len(set(provider.sent)) == 1200
    assert await world.states(runtime, campaign_id) == {MessageState.SENT: 1200}
    async with runtime.sessions() as session:
        closed = await session.scalar(
            select(func.count()).where(MessageAttempt.outcome == "accepted")
        )
    assert closed == 1200


async def test_an_unreadable_message_fails_alone(runtime: Runtime) -> None:
    pm = await make_actor(runtime, Role.PM)
    await world.add_device(runtime, "http://127.0.0.1:9", Platform.TELEGRAM)
    broken, fine = await world.add_prospects(runtime, pm, [Channel.TELEGRAM], 2)
    await world.launch(runtime, pm, [broken, fine], now=T0)
    async with runtime.sessions() as session, session.begin():
        await session.execute(
            update(Message).where(Message.prospect_id == broken).values(content_enc=b"x" * 40)
        )
    adapters: dict[Platform, ChannelAdapter] = {
        Platform.TELEGRAM: world.AcceptAll(Platform.TELEGRAM)
    }
    report = await world.run(world.dispatcher(runtime, adapters, clock=Clock()))
    assert report.states == {MessageState.FAILED: 1, MessageState.SENT: 1}
    (failed,) = await world.messages(runtime, Message.state == MessageState.FAILED)
    assert failed.prospect_id == broken
    assert failed.last_error == "could not be prepared: InvalidTag"
