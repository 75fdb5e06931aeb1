"""The whole inbound loop over real HTTP: our API served on loopback, the sandbox calling back
the way each provider does (Telegram webhook we register, BlueBubbles webhook we register,
Signal's event stream we consume), and message states and replies landing in the database."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from mcep.api.embedded import serve_in_loop
from mcep.app import create_app
from mcep.auth.models import Role
from mcep.channels.base import Accepted, ChannelAdapter, OutboundMessage, Platform
from mcep.channels.http import close_sessions, open_sessions
from mcep.channels.registry import build_adapters
from mcep.contacts.models import Channel
from mcep.dispatch.models import Message, MessageState
from mcep.fleet.models import Device
from mcep.fleet.service import device_ref, seal_token
from mcep.inbound.models import InboundMessage
from mcep.inbound.tasks import SignalReceiverJob, register_webhooks
from mcep.runtime import Runtime
from mcep.sandbox.behaviour import Behaviour, Delay
from mcep.sandbox.server import run_sandbox
from mcep.sandbox.state import SandboxState
from mcep.worker.base import WorkerContext
from tests.conftest import WHATSAPP_APP_SECRET, make_actor
from tests.e2e.inbound.builders import PHONE, add_world

FAST = Delay(0.01, 0.05)


@dataclass
class Loop:
    runtime: Runtime
    api: str
    sandbox: str
    state: SandboxState
    adapters: dict[Platform, ChannelAdapter]


@pytest.fixture
async def loop(runtime: Runtime) -> AsyncIterator[Loop]:
    behaviour = Behaviour(
        seed=7,
        deliver_probability=1.0,
        read_probability=1.0,
        reply_probability=1.0,
        reply_corpus=("Sounds interesting",),
        deliver_delay=FAST,
        read_delay=FAST,
        reply_delay=FAST,
    )
    sessions = open_sessions()
    try:
        async with serve_in_loop(create_app(runtime.settings, runtime=runtime)) as api:
            state = SandboxState(
                behaviour=behaviour, callback_base=api, whatsapp_app_secret=WHATSAPP_APP_SECRET
            )
            async with run_sandbox(state) as sandbox:
                yield Loop(runtime, api, sandbox, state, build_adapters(sessions))
    finally:
        await close_sessions(sessions)


async def _device(
    runtime: Runtime, platform: Platform, address: str, base_url: str, token: str
) -> Device:
    key, sealed = seal_token(runtime.keyring, token)
    async with runtime.sessions() as session, session.begin():
        device = Device(
            platform=platform, address=address, base_url=base_url, token_key=key, token_enc=sealed
        )
        session.add(device)
    return device


async def _send(loop: Loop, device: Device, message_id: uuid.UUID, recipient: str) -> str:
    adapter = loop.adapters[device.platform]
    result = await adapter.send(
        OutboundMessage(key=f"{message_id}:1", recipient=recipient, body="Hello from your PM"),
        device_ref(device, loop.runtime.keyring),
    )
    assert isinstance(result, Accepted), result
    async with loop.runtime.sessions() as session, session.begin():
        message = await session.get(Message, message_id)
        assert message is not None
        message.provider_message_id = result.provider_message_id
    return result.provider_message_id


async def _until(check: Callable[[], Coroutine[Any, Any, bool]], *, seconds: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the condition did not hold in time")
        await asyncio.sleep(0.05)


async def _state(runtime: Runtime, message_id: uuid.UUID) -> MessageState:
    async with runtime.sessions() as session:
        message = await session.get(Message, message_id)
        assert message is not None
        return message.state


async def _replies(runtime: Runtime, message_id: uuid.UUID) -> int:
    async with runtime.sessions() as session:
        return len(
            (
                await session.scalars(
                    select(InboundMessage).where(InboundMessage.in_reply_to == message_id)
                )
            ).all()
        )


async def test_signal_stream_moves_the_message_and_brings_the_reply(loop: Loop) -> None:
    pm = await make_actor(loop.runtime, Role.PM)
    device = await _device(
        loop.runtime, Platform.SIGNAL, "+15550001111", f"{loop.sandbox}/signal", "unused"
    )
    world = await add_world(
        loop.runtime, pm, device_id=device.id, channel=Channel.SIGNAL, wamid=None
    )
    stop = asyncio.Event()
    context = WorkerContext(runtime=loop.runtime, owner="test", adapters=loop.adapters)
    receiver = asyncio.create_task(SignalReceiverJob().run(context, stop))
    try:
        await asyncio.sleep(0.3)  # the stream is open before the receipts exist
        await _send(loop, device, world.message_id, PHONE)

        async def read_and_replied() -> bool:
            state = await _state(loop.runtime, world.message_id)
            return (
                state is MessageState.READ and await _replies(loop.runtime, world.message_id) == 1
            )

        await _until(read_and_replied)
    finally:
        stop.set()
        await receiver


async def test_registered_telegram_and_imessage_webhooks_deliver_replies(loop: Loop) -> None:
    pm = await make_actor(loop.runtime, Role.PM)
    bot = await _device(
        loop.runtime, Platform.TELEGRAM, "777001", f"{loop.sandbox}/telegram", "777001:AAbbCCddEE"
    )
    mac = await _device(
        loop.runtime, Platform.IMESSAGE, "mac-1", f"{loop.sandbox}/imessage/mac-1", "pw"
    )
    context = WorkerContext(runtime=loop.runtime, owner="test", adapters=loop.adapters)
    assert await register_webhooks(context, loop.api) == {"telegram": 1, "imessage": 1}

    tg = await add_world(loop.runtime, pm, device_id=bot.id, channel=Channel.TELEGRAM, wamid=None)
    im = await add_world(loop.runtime, pm, device_id=mac.id, channel=Channel.IMESSAGE, wamid=None)
    await _send(loop, mac, im.message_id, PHONE)
    await _until(lambda: _replies_and_read(loop.runtime, im.message_id))
    # Telegram has no receipts; the reply comes through the webhook we registered, with its
    # secret token. (This chat id belongs to no prospect: the reply is kept, unattributed.)
    await _send(loop, bot, tg.message_id, "4242")
    await _until(lambda: _inbound_on(loop.runtime, Channel.TELEGRAM))
    assert await _state(loop.runtime, tg.message_id) is MessageState.SENT


async def _inbound_on(runtime: Runtime, channel: Channel) -> bool:
    async with runtime.sessions() as session:
        rows = await session.scalars(
            select(InboundMessage).where(InboundMessage.channel == channel)
        )
        return len(rows.all()) == 1


async def _replies_and_read(runtime: Runtime, message_id: uuid.UUID) -> bool:
    return (
        await _state(runtime, message_id) is MessageState.READ
        and await _replies(runtime, message_id) == 1
    )
