"""Transient failures through the real adapters and the sandbox, on SQLite and PostgreSQL,
with a clock the test moves: retries 1, 5 and 15 minutes apart, then dead; a replay puts the
dead letter back and it goes out; a provider's own retry-after is a floor."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from mcep.auth.models import Role
from mcep.channels.base import Platform
from mcep.contacts.models import Channel
from mcep.dispatch import service
from mcep.dispatch.models import Event, MessageAttempt, MessageState
from mcep.runtime import Runtime
from mcep.sandbox.behaviour import Behaviour, DeviceBehaviour
from tests.conftest import make_actor
from tests.integration.campaigns.builders import principal
from tests.integration.dispatch import world
from tests.integration.dispatch.world import T0, Clock


async def test_transient_errors_retry_on_schedule_then_die_and_replay_sends(
    runtime: Runtime,
) -> None:
    pm = await make_actor(runtime, Role.PM)
    failing = DeviceBehaviour(transient_error_rate=1.0)
    spec = world.device_spec(Platform.WHATSAPP, 0)
    behaviour = Behaviour().with_device(spec.ledger_device, failing)
    async with world.sandbox(behaviour) as box:
        await world.add_device(runtime, box.url, Platform.WHATSAPP)
        prospects = await world.add_prospects(runtime, pm, [Channel.WHATSAPP], 1)
        campaign_id = await world.launch(runtime, pm, prospects, now=T0)
        clock = Clock()
        worker = world.dispatcher(runtime, box, clock=clock)

        assert (await world.run(worker)).claimed == 1  # the first attempt fails at T0
        schedule = []
        due = T0
        for _ in range(3):
            (message,) = await world.messages(runtime)
            assert message.state is MessageState.RETRY_SCHEDULED
            schedule.append(message.next_attempt_at - due)
            due = message.next_attempt_at
            clock.set(due - timedelta(seconds=1))
            assert (await world.run(worker)).claimed == 0  # not a second early
            clock.set(due)
            assert (await world.run(worker)).claimed == 1
        assert schedule == [timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=15)]

        (message,) = await world.messages(runtime)
        assert (message.state, message.failures, message.attempts) == (MessageState.DEAD, 4, 4)
        assert message.last_error == "(#131000) Something went wrong"
        clock.set(T0 + timedelta(hours=1))
        assert (await world.run(worker)).claimed == 0  # dead stays dead

        async with runtime.sessions() as session, session.begin():
            await service.replay(session, principal(pm), message.id, now=clock())
        box.state.behaviour = Behaviour()  # the provider recovered
        assert (await world.run(worker)).claimed == 1
    (message,) = await world.messages(runtime)
    assert (message.state, message.attempts, message.failures) == (MessageState.SENT, 5, 0)
    assert message.provider_message_id and message.sent_at == clock()
    assert box.accepted() == {str(message.id): 1}
    async with runtime.sessions() as session:
        attempts = [str(a) for a in (await session.scalars(select(MessageAttempt.outcome))).all()]
        kinds = (await session.scalars(select(Event.kind).order_by(Event.id))).all()
    assert sorted(attempts) == ["accepted", "dead", "retry", "retry", "retry"]
    assert kinds == [
        "queued",
        "retry_scheduled",
        "retry_scheduled",
        "retry_scheduled",
        "dead",
        "replayed",
        "sent",
    ]
    assert (await world.states(runtime, campaign_id)) == {MessageState.SENT: 1}


async def test_a_429_with_retry_after_30_s_is_not_retried_sooner(runtime: Runtime) -> None:
    pm = await make_actor(runtime, Role.PM)
    behaviour = Behaviour(rate_limit_rate=1.0, retry_after=30.0)
    async with world.sandbox(behaviour) as box:
        await world.add_device(runtime, box.url, Platform.TELEGRAM)
        prospects = await world.add_prospects(runtime, pm, [Channel.TELEGRAM], 1)
        await world.launch(runtime, pm, prospects, now=T0, retry_delays=[5, 10, 20])
        clock = Clock()
        worker = world.dispatcher(runtime, box, clock=clock)
        assert (await world.run(worker)).claimed == 1
        (message,) = await world.messages(runtime)
        # the policy says 5 s, the provider said 30 s: the later one wins
        assert message.state is MessageState.RETRY_SCHEDULED
        assert message.next_attempt_at == T0 + timedelta(seconds=30)
        clock.set(T0 + timedelta(seconds=29))
        assert (await world.run(worker)).claimed == 0
        box.state.behaviour = Behaviour()
        clock.set(T0 + timedelta(seconds=30))
        assert (await world.run(worker)).claimed == 1
    (message,) = await world.messages(runtime)
    assert message.state is MessageState.SENT
    async with runtime.sessions() as session:
        first = await session.scalar(select(MessageAttempt).where(MessageAttempt.attempt == 1))
    assert first is not None and (first.outcome, first.retry_after) == ("retry", 30.0)
