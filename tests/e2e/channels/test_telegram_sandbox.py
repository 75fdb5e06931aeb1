"""The real Telegram adapter and poller against the sandbox over loopback HTTP."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from mcep.channels.base import (
    Accepted,
    DeviceFailure,
    DeviceRef,
    HealthStatus,
    InboundMessage,
    OptOutEvent,
    OutboundMessage,
    PermanentFailure,
    Platform,
    ProviderEvent,
    RetryLater,
)
from mcep.channels.http import HttpLimits, create_session
from mcep.channels.telegram import (
    SECRET_TOKEN_HEADER,
    PolledUpdate,
    PollingError,
    TelegramAdapter,
    parse_update,
    poll_updates,
    verify_secret_token,
)
from mcep.sandbox.behaviour import Behaviour, Delay, DeviceBehaviour, LedgerKey, RecipientBehaviour
from mcep.sandbox.server import run_sandbox
from mcep.sandbox.state import SandboxState

FIXTURES = Path(__file__).parents[2] / "fixtures" / "providers" / "telegram"
BOT_ID = "7172552019"
TOKEN = f"{BOT_ID}:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
USERNAME = f"sandbox{BOT_ID}_bot"
CHAT = "5342492667"
SECRET = "hook-secret_42"
QUICK = Delay(0.01, 0.03)


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def shape_mismatches(actual: Any, expected: Any, path: str = "$") -> list[str]:
    """Paths where ``actual`` lacks, adds or retypes a field of ``expected``."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: expected an object"]
        problems = [f"{path}.{k}: missing" for k in expected if k not in actual]
        problems += [f"{path}.{k}: unexpected" for k in actual if k not in expected]
        for key in expected.keys() & actual.keys():
            problems += shape_mismatches(actual[key], expected[key], f"{path}.{key}")
        return problems
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) < len(expected):
            return [f"{path}: expected at least {len(expected)} items"]
        return [
            p
            for i, item in enumerate(expected)
            for p in shape_mismatches(actual[i], item, f"{path}[{i}]")
        ]
    return [] if type(actual) is type(expected) else [f"{path}: {type(actual).__name__}"]


@dataclass
class World:
    state: SandboxState
    adapter: TelegramAdapter
    device: DeviceRef
    session: aiohttp.ClientSession
    base_url: str

    async def call(self, method: str, token: str = TOKEN, **params: Any) -> tuple[int, Any]:
        url = f"{self.base_url}/telegram/bot{token}/{method}"
        async with self.session.post(url, json=params) as response:
            return response.status, await response.json()


def make_state(**knobs: Any) -> SandboxState:
    behaviour = Behaviour(**{"reply_delay": QUICK, "opt_out_delay": QUICK, **knobs})
    return SandboxState(behaviour=behaviour, callback_retry_delay=0.01)


@pytest.fixture
async def world_factory() -> AsyncIterator[Callable[[SandboxState], Any]]:
    stack: list[Any] = []

    async def start(state: SandboxState) -> World:
        cm = run_sandbox(state)
        base_url = await cm.__aenter__()
        session = create_session(HttpLimits(total_timeout=10))
        stack.append((cm, session))
        device = DeviceRef("tg-1", Platform.TELEGRAM, USERNAME, f"{base_url}/telegram", TOKEN)
        return World(state, TelegramAdapter(session), device, session, base_url)

    yield start
    for cm, session in reversed(stack):
        await session.close()
        await cm.__aexit__(None, None, None)


def msg(body: str = "Hello from MCEP", to: str = CHAT) -> OutboundMessage:
    return OutboundMessage(key=f"k-{body}", recipient=to, body=body)


# --- sends -------------------------------------------------------------------------------


async def test_send_returns_the_providers_id_and_is_counted_once(world_factory: Any) -> None:
    world: World = await world_factory(make_state())
    first = await world.adapter.send(msg("one"), world.device)
    second = await world.adapter.send(msg("two"), world.device)
    assert first == Accepted(f"{CHAT}:1") and second == Accepted(f"{CHAT}:2")
    assert world.state.ledger.count(LedgerKey("telegram", BOT_ID, CHAT, "one")) == 1
    assert world.state.ledger.total == 2


async def test_429_yields_retry_later_with_the_providers_delay(world_factory: Any) -> None:
    world: World = await world_factory(make_state(rate_limit_rate=1.0, retry_after=3))
    result = await world.adapter.send(msg(), world.device)
    assert result == RetryLater("Too Many Requests: retry after 3", retry_after=3.0, code="429")
    assert world.state.ledger.total == 0


async def test_banned_bot_and_unknown_token_yield_device_failure(world_factory: Any) -> None:
    state = make_state(devices={BOT_ID: DeviceBehaviour(banned_at=0.0)})
    world: World = await world_factory(state)
    banned = await world.adapter.send(msg(), world.device)
    assert isinstance(banned, DeviceFailure) and banned.code == "401"
    assert (await world.adapter.probe(world.device)).status is HealthStatus.DOWN


async def test_strict_mode_and_malformed_tokens(world_factory: Any) -> None:
    state = make_state()
    state.strict, state.tokens = True, {"telegram": frozenset({TOKEN})}
    world: World = await world_factory(state)
    assert isinstance(await world.adapter.send(msg(), world.device), Accepted)
    other = DeviceRef("tg-2", Platform.TELEGRAM, "x", world.device.base_url, "123:someoneElse")
    unknown = await world.adapter.send(msg(), other)
    assert isinstance(unknown, DeviceFailure) and unknown.code == "401"
    assert "someoneElse" not in unknown.reason
    garbled = DeviceRef("tg-3", Platform.TELEGRAM, "x", world.device.base_url, "no-colon")
    malformed = await world.adapter.send(msg(), garbled)
    assert isinstance(malformed, DeviceFailure) and malformed.code == "404"


@pytest.mark.parametrize(
    ("knobs", "expected", "code"),
    [
        ({"transient_error_rate": 1.0}, RetryLater, "500"),
        ({"devices": {BOT_ID: DeviceBehaviour(offline=((0, 99),))}}, RetryLater, "502"),
        ({"not_on_platform_rate": 1.0}, PermanentFailure, "400"),
    ],
)
async def test_other_outcomes_are_classified(
    world_factory: Any, knobs: dict[str, Any], expected: type, code: str
) -> None:
    world: World = await world_factory(make_state(**knobs))
    result = await world.adapter.send(msg(), world.device)
    assert isinstance(result, expected)
    assert not isinstance(result, Accepted) and result.code == code


async def test_unreachable_api_is_retry_later(world_factory: Any) -> None:
    world: World = await world_factory(make_state())
    nowhere = DeviceRef("tg-4", Platform.TELEGRAM, "x", "http://127.0.0.1:9/telegram", TOKEN)
    result = await world.adapter.send(msg(), nowhere)
    assert isinstance(result, RetryLater) and result.code == "transport"
    assert TOKEN not in result.reason
    assert (await world.adapter.probe(nowhere)).status is HealthStatus.DOWN


async def test_probe_with_get_me(world_factory: Any) -> None:
    world: World = await world_factory(make_state())
    health = await world.adapter.probe(world.device)
    assert health.status is HealthStatus.OK
    assert health.attributes == {"bot_id": BOT_ID, "username": USERNAME}


# --- replies, blocks, polling ------------------------------------------------------------


async def collect(world: World, count: int, **kwargs: Any) -> list[PolledUpdate]:
    got: list[PolledUpdate] = []
    async with asyncio.timeout(10):
        async for update in poll_updates(world.session, world.device, poll_timeout=2, **kwargs):
            got.append(update)
            if len(got) == count:
                break
    return got


async def test_reply_and_block_arrive_by_polling_then_sends_are_refused(world_factory: Any) -> None:
    person = RecipientBehaviour(reply_probability=1.0, opt_out_probability=1.0, reply_text="STOP")
    world: World = await world_factory(make_state(recipients={CHAT: person}))
    assert isinstance(await world.adapter.send(msg(), world.device), Accepted)
    updates = await collect(world, 2)
    events = [e for u in updates for e in u.events]
    reply = next(e for e in events if isinstance(e, InboundMessage))
    assert (reply.sender, reply.text, reply.device_address) == (CHAT, "STOP", USERNAME)
    assert any(isinstance(e, OptOutEvent) and e.sender == CHAT for e in events)
    blocked = await world.adapter.send(msg("again"), world.device)
    assert isinstance(blocked, PermanentFailure) and blocked.opted_out and blocked.code == "403"


async def test_offsets_confirm_and_unconfirmed_updates_are_redelivered(world_factory: Any) -> None:
    person = RecipientBehaviour(reply_probability=1.0, reply_text="hi")
    world: World = await world_factory(make_state(recipients={CHAT: person, "77": person}))
    await world.adapter.send(msg(), world.device)
    await world.adapter.send(msg(to="77"), world.device)
    await world.state.scheduler.drain()
    first = await collect(world, 2)
    assert [u.update_id for u in first] == [1, 2]
    again = await collect(world, 2)  # nothing confirmed the second update yet... nor the first
    assert [u.update_id for u in again] == [1, 2]
    status, body = await world.call("getUpdates", offset=3)
    assert (status, body["result"]) == (200, [])
    _, info = await world.call("getWebhookInfo")
    assert info["result"]["pending_update_count"] == 0


async def test_long_poll_timeout_is_honoured(world_factory: Any) -> None:
    world: World = await world_factory(make_state())
    started = time.monotonic()
    status, body = await world.call("getUpdates", timeout=1)
    assert (status, body) == (200, {"ok": True, "result": []})
    assert 0.9 <= time.monotonic() - started < 3
    person = RecipientBehaviour(reply_probability=1.0, reply_text="quick")
    world.state.behaviour = world.state.behaviour.with_recipient(CHAT, person)
    await world.adapter.send(msg(), world.device)
    started = time.monotonic()
    status, body = await world.call("getUpdates", timeout=5)
    assert body["result"][0]["message"]["text"] == "quick"
    assert time.monotonic() - started < 2


# --- webhooks ----------------------------------------------------------------------------


@dataclass
class Receiver:
    """Checks the secret token like the app must, then parses; keeps what arrived."""

    secret: str
    url: str = ""
    events: list[ProviderEvent] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    rejected: int = 0
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        if not verify_secret_token(self.secret, request.headers.get(SECRET_TOKEN_HEADER)):
            self.rejected += 1
            return web.Response(status=401)
        raw = await request.read()
        self.bodies.append(json.loads(raw))
        self.events.extend(parse_update(raw, device_address=USERNAME))
        self._arrived.set()
        return web.Response(text="ok")

    async def wait_for(self, count: int, within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            while len(self.events) < count:
                self._arrived.clear()
                await self._arrived.wait()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver(secret=SECRET)
    app = web.Application()
    app.router.add_post("/api/v1/providers/telegram/webhook/tg-1", found.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    found.url = f"http://127.0.0.1:{runner.addresses[0][1]}/api/v1/providers/telegram/webhook/tg-1"
    yield found
    await runner.cleanup()


async def test_webhook_gets_updates_with_the_secret_and_blocks_polling(
    world_factory: Any, receiver: Receiver
) -> None:
    person = RecipientBehaviour(reply_probability=1.0, reply_text="before the hook")
    world: World = await world_factory(make_state(recipients={CHAT: person}, read_probability=1.0))
    await world.adapter.send(msg(), world.device)
    await world.state.scheduler.drain()  # queued for getUpdates: no webhook yet
    assert await world.adapter.set_webhook(world.device, url=receiver.url, secret_token=SECRET)
    await receiver.wait_for(1)  # the queued update is handed to the new webhook
    assert receiver.events[0].text == "before the hook"  # type: ignore[union-attr]

    info = await world.adapter.get_webhook_info(world.device)
    assert info is not None and info["url"] == receiver.url
    with pytest.raises(PollingError) as conflict:
        await collect(world, 1)
    assert conflict.value.error_code == 409

    world.state.behaviour = world.state.behaviour.with_recipient(
        CHAT, RecipientBehaviour(reply_probability=1.0, reply_text="via hook")
    )
    await world.adapter.send(msg("second"), world.device)
    await receiver.wait_for(2)
    assert receiver.events[1].text == "via hook"  # type: ignore[union-attr]
    assert receiver.rejected == 0
    assert len(receiver.bodies) == 2  # no delivered or read receipts for bots
    assert shape_mismatches(receiver.bodies[1], fixture("update_message.json")) == []

    assert await world.adapter.delete_webhook(world.device)
    status, _ = await world.call("getUpdates")
    assert status == 200


async def test_wrong_secret_is_rejected_and_counted(world_factory: Any, receiver: Receiver) -> None:
    person = RecipientBehaviour(reply_probability=1.0)
    world: World = await world_factory(make_state(recipients={CHAT: person}))
    assert await world.adapter.set_webhook(
        world.device, url=receiver.url, secret_token="not-the-secret"
    )
    await world.adapter.send(msg(), world.device)
    await world.state.scheduler.drain()
    assert receiver.events == [] and receiver.rejected == world.state.callback_attempts
    assert world.state.callback_stats["telegram:failed"] == 1


async def test_bad_secret_token_is_refused_by_set_webhook(world_factory: Any) -> None:
    world: World = await world_factory(make_state())
    status, body = await world.call(
        "setWebhook", url="http://127.0.0.1:1/x", secret_token="no spaces!"
    )
    assert (status, body["error_code"]) == (400, 400)
    assert not await world.adapter.set_webhook(
        world.device, url="http://x/y", secret_token="bad secret"
    )


# --- the sandbox's answers match the recorded examples -----------------------------------


async def test_answers_match_the_recorded_examples(world_factory: Any) -> None:
    person = RecipientBehaviour(reply_probability=1.0, opt_out_probability=1.0)
    state = make_state(recipients={CHAT: person}, opt_out_delay=Delay(0.2, 0.2))
    world: World = await world_factory(state)
    status, body = await world.call("sendMessage", **fixture("send_message_request.json"))
    assert status == 200 and shape_mismatches(body, fixture("send_message_response.json")) == []
    _, body = await world.call("getMe")
    assert shape_mismatches(body, fixture("get_me_response.json")) == []
    await state.scheduler.drain()
    _, body = await world.call("getUpdates")
    assert shape_mismatches(body, fixture("get_updates_response.json")) == []
    _, body = await world.call("sendMessage", **fixture("send_message_request.json"))
    assert body == fixture("error_403_blocked.json")
    _, body = await world.call("getWebhookInfo")
    assert body == {
        "ok": True,
        "result": {"url": "", "has_custom_certificate": False, "pending_update_count": 2},
    }
    _, body = await world.call(
        "setWebhook", url="http://127.0.0.1:9/hook", drop_pending_updates=True
    )
    assert body == fixture("set_webhook_response.json")
    _, body = await world.call("getUpdates")
    assert body == fixture("error_409_webhook_active.json")
    _, body = await world.call("deleteWebhook")
    assert body == fixture("delete_webhook_response.json")
    _, body = await world.call("getWebhookInfo")
    assert body == fixture("get_webhook_info_response.json")


@pytest.mark.parametrize(
    ("knobs", "token", "fixture_name"),
    [
        ({"rate_limit_rate": 1.0, "retry_after": 15}, TOKEN, "error_429.json"),
        ({"not_on_platform_rate": 1.0}, TOKEN, "error_400_chat_not_found.json"),
        ({"devices": {BOT_ID: DeviceBehaviour(banned_at=0)}}, TOKEN, "error_401.json"),
        ({}, "malformed", "error_404.json"),
    ],
)
async def test_errors_match_the_recorded_examples(
    world_factory: Any, knobs: dict[str, Any], token: str, fixture_name: str
) -> None:
    world: World = await world_factory(make_state(**knobs))
    status, body = await world.call(
        "sendMessage", token=token, **fixture("send_message_request.json")
    )
    assert body == fixture(fixture_name)
    assert status == body["error_code"]


async def test_parameters_by_query_and_form_too(world_factory: Any) -> None:
    world: World = await world_factory(make_state())
    url = f"{world.base_url}/telegram/bot{TOKEN}/sendMessage"
    async with world.session.get(url, params={"chat_id": CHAT, "text": "by query"}) as response:
        assert (await response.json())["result"]["text"] == "by query"
    async with world.session.post(url, data={"chat_id": CHAT, "text": "by form"}) as response:
        assert (await response.json())["result"]["chat"]["id"] == int(CHAT)
    async with world.session.post(url, data={"chat_id": CHAT}) as response:
        assert (response.status, (await response.json())["description"]) == (
            400,
            "Bad Request: message text is empty",
        )
    async with world.session.post(f"{world.base_url}/telegram/bot{TOKEN}/noSuchMethod") as response:
        assert response.status == 404
