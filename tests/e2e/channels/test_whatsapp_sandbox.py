"""The real WhatsApp adapter against the sandbox over loopback HTTP, callbacks included."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from mcep.channels.base import (
    Accepted,
    DeliveryStatus,
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
    StatusEvent,
    WhatsAppTemplate,
)
from mcep.channels.http import HttpLimits, create_session
from mcep.channels.whatsapp import (
    HEALTH_FIELDS,
    WhatsAppAdapter,
    parse_webhook,
    verify_signature,
    verify_subscription,
)
from mcep.sandbox.behaviour import Behaviour, Delay, DeviceBehaviour, LedgerKey, RecipientBehaviour
from mcep.sandbox.server import run_sandbox
from mcep.sandbox.state import SandboxState
from mcep.sandbox.whatsapp import check_subscription

FIXTURES = Path(__file__).parents[2] / "fixtures" / "providers" / "whatsapp"
PNID = "106540352242922"
TOKEN = "EAAGsandboxToken123"
SECRET = "whatsapp-app-secret"
VERIFY_TOKEN = "verify-me"
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
        if not isinstance(actual, list) or not actual:
            return [f"{path}: expected a non-empty list"]
        return [
            p
            for i, item in enumerate(actual)
            for p in shape_mismatches(item, expected[0], f"{path}[{i}]")
        ]
    return [] if type(actual) is type(expected) else [f"{path}: {type(actual).__name__}"]


# --- a webhook receiver standing in for MCEP's route -------------------------------------


@dataclass
class Receiver:
    """Checks the signature like the app must, then parses; keeps what arrived."""

    secret: str
    base_url: str = ""
    events: list[ProviderEvent] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    rejected: int = 0
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if not verify_signature(self.secret, raw, request.headers.get("X-Hub-Signature-256")):
            self.rejected += 1
            return web.Response(status=403)
        self.bodies.append(json.loads(raw))
        self.events.extend(parse_webhook(raw))
        self._arrived.set()
        return web.Response(text="ok")

    async def subscribe(self, request: web.Request) -> web.Response:
        challenge = verify_subscription(dict(request.query), VERIFY_TOKEN)
        if challenge is None:
            return web.Response(status=403)
        return web.Response(text=challenge)

    async def wait_for(
        self, predicate: Callable[[list[ProviderEvent]], bool], within: float = 5.0
    ) -> None:
        async with asyncio.timeout(within):
            while not predicate(self.events):
                self._arrived.clear()
                await self._arrived.wait()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver(secret=SECRET)
    app = web.Application()
    app.router.add_post("/api/v1/providers/whatsapp/webhook", found.handle)
    app.router.add_get("/api/v1/providers/whatsapp/webhook", found.subscribe)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    found.base_url = f"http://127.0.0.1:{port}"
    yield found
    await runner.cleanup()


@dataclass
class World:
    state: SandboxState
    adapter: WhatsAppAdapter
    device: DeviceRef
    session: aiohttp.ClientSession
    base_url: str


def make_state(receiver: Receiver | None = None, **knobs: Any) -> SandboxState:
    delays = {
        "deliver_delay": QUICK,
        "read_delay": QUICK,
        "reply_delay": QUICK,
        "opt_out_delay": QUICK,
    }
    behaviour = Behaviour(**{**delays, **knobs})
    return SandboxState(
        behaviour=behaviour,
        callback_base=receiver.base_url if receiver else None,
        whatsapp_app_secret=SECRET,
        callback_retry_delay=0.01,
    )


@pytest.fixture
async def world_factory() -> AsyncIterator[Callable[[SandboxState], Any]]:
    stack: list[Any] = []

    async def start(state: SandboxState) -> World:
        cm = run_sandbox(state)
        base_url = await cm.__aenter__()
        session = create_session(HttpLimits(total_timeout=5))
        stack.append((cm, session))
        device = DeviceRef("wa-1", Platform.WHATSAPP, PNID, f"{base_url}/whatsapp", TOKEN)
        return World(state, WhatsAppAdapter(session), device, session, base_url)

    yield start
    for cm, session in reversed(stack):
        await session.close()
        await cm.__aexit__(None, None, None)


def text(key: str, to: str = "+1 650 555 1234", body: str = "Hello from MCEP") -> OutboundMessage:
    return OutboundMessage(key=key, recipient=to, body=body)


# --- sends -------------------------------------------------------------------------------


async def test_send_returns_the_providers_id_and_is_counted_once(world_factory: Any) -> None:
    world: World = await world_factory(make_state())
    result = await world.adapter.send(text("msg-1"), world.device)
    assert isinstance(result, Accepted)
    assert result.provider_message_id.startswith("wamid.")
    entry = world.state.ledger.lookup(result.provider_message_id)
    assert entry is not None
    assert entry.key == LedgerKey("whatsapp", PNID, "16505551234", "msg-1")
    assert world.state.ledger.count(entry.key) == 1


async def test_template_with_parameters_is_checked_against_the_approved_template(
    world_factory: Any,
) -> None:
    state = make_state()
    state.whatsapp_templates = {"appointment_reminder": 2}
    world: World = await world_factory(state)
    good = WhatsAppTemplate("appointment_reminder", "en_US", ("Alex", "Tuesday"))
    result = await world.adapter.send(OutboundMessage("t-1", "16505551234", "", good), world.device)
    assert isinstance(result, Accepted)
    short = WhatsAppTemplate("appointment_reminder", "en_US", ("Alex",))
    mismatch = await world.adapter.send(
        OutboundMessage("t-2", "16505551234", "", short), world.device
    )
    assert isinstance(mismatch, PermanentFailure) and mismatch.code == "132000"
    unknown = WhatsAppTemplate("nope", "en_US")
    missing = await world.adapter.send(
        OutboundMessage("t-3", "16505551234", "", unknown), world.device
    )
    assert isinstance(missing, PermanentFailure) and missing.code == "132001"
    assert world.state.ledger.counts_by_message_key() == {"t-1": 1}


async def test_rate_limit_yields_retry_later(world_factory: Any) -> None:
    world: World = await world_factory(make_state(rate_limit_rate=1.0))
    result = await world.adapter.send(text("msg-429"), world.device)
    assert isinstance(result, RetryLater)
    assert result.code == "130429"
    assert world.state.ledger.total == 0


async def test_transient_error_yields_retry_later(world_factory: Any) -> None:
    world: World = await world_factory(make_state(transient_error_rate=1.0))
    result = await world.adapter.send(text("msg-500"), world.device)
    assert isinstance(result, RetryLater) and result.code == "131000"


async def test_banned_device_yields_device_failure(world_factory: Any) -> None:
    state = make_state(devices={PNID: DeviceBehaviour(banned_at=0.0)})
    world: World = await world_factory(state)
    result = await world.adapter.send(text("msg-ban"), world.device)
    assert isinstance(result, DeviceFailure) and result.code == "131031"
    health = await world.adapter.probe(world.device)
    assert health.status is HealthStatus.DOWN


async def test_offline_device_yields_retry_later_then_recovers(world_factory: Any) -> None:
    world: World = await world_factory(
        make_state(devices={PNID: DeviceBehaviour(offline=((0.0, 0.3),))})
    )
    first = await world.adapter.send(text("msg-off"), world.device)
    assert isinstance(first, RetryLater) and first.code == "131057"
    assert first.retry_after == 60.0
    await asyncio.sleep(0.35)
    assert isinstance(await world.adapter.send(text("msg-off"), world.device), Accepted)


async def test_strict_mode_rejects_unknown_tokens_as_device_failure(world_factory: Any) -> None:
    state = make_state()
    state.strict, state.tokens = True, {"whatsapp": frozenset({TOKEN})}
    world: World = await world_factory(state)
    assert isinstance(await world.adapter.send(text("ok"), world.device), Accepted)
    stranger = DeviceRef("wa-2", Platform.WHATSAPP, PNID, world.device.base_url, "EAAGsomeoneElse")
    result = await world.adapter.send(text("no"), stranger)
    assert isinstance(result, DeviceFailure) and result.code == "190"
    assert "EAAGsomeoneElse" not in repr(result)
    assert (await world.adapter.probe(stranger)).status is HealthStatus.DOWN


async def test_malformed_token_is_refused_in_any_mode(world_factory: Any) -> None:
    world: World = await world_factory(make_state())
    bad = DeviceRef("wa-3", Platform.WHATSAPP, PNID, world.device.base_url, "not a token")
    result = await world.adapter.send(text("x"), bad)
    assert isinstance(result, DeviceFailure) and result.code == "190"


async def test_unreachable_or_slow_provider_is_retry_later(world_factory: Any) -> None:
    world: World = await world_factory(make_state(latency=Delay(1.0, 1.0)))
    async with create_session(HttpLimits(total_timeout=0.2)) as impatient:
        slow = await WhatsAppAdapter(impatient).send(text("slow"), world.device)
    assert isinstance(slow, RetryLater) and slow.code == "transport"
    nowhere = DeviceRef("wa-4", Platform.WHATSAPP, PNID, "http://127.0.0.1:9/whatsapp", TOKEN)
    gone = await world.adapter.send(text("gone"), nowhere)
    assert isinstance(gone, RetryLater) and gone.code == "transport"
    assert TOKEN not in gone.reason


async def test_mark_read(world_factory: Any) -> None:
    world: World = await world_factory(make_state())
    assert await world.adapter.mark_read(world.device, message_id="wamid.abc")


# --- health ------------------------------------------------------------------------------


async def test_probe_reports_quality_and_tier_from_the_api(world_factory: Any) -> None:
    device_behaviour = DeviceBehaviour(quality_rating="YELLOW", messaging_tier="TIER_10K")
    world: World = await world_factory(make_state(devices={PNID: device_behaviour}))
    health = await world.adapter.probe(world.device)
    assert health.status is HealthStatus.DEGRADED
    assert health.attributes["quality_rating"] == "YELLOW"
    assert health.attributes["messaging_limit_tier"] == "TIER_10K"
    healthy: World = await world_factory(make_state())
    assert (await healthy.adapter.probe(healthy.device)).status is HealthStatus.OK


# --- the sandbox's answers match the recorded examples -----------------------------------


async def post(
    world: World, body: Any, token: str = TOKEN, version: str = "21.0"
) -> tuple[int, Any]:
    url = f"{world.base_url}/whatsapp/v{version}/{PNID}/messages"
    headers = {"Authorization": f"Bearer {token}"}
    async with world.session.post(url, json=body, headers=headers) as response:
        return response.status, await response.json()


async def test_answers_match_the_recorded_examples_field_for_field(world_factory: Any) -> None:
    world: World = await world_factory(make_state())
    status, body = await post(world, fixture("send_text_request.json"))
    assert status == 200
    assert shape_mismatches(body, fixture("send_response.json")) == []
    assert body["contacts"][0] == {"input": "16505551234", "wa_id": "16505551234"}
    status, body = await post(world, fixture("send_template_request.json"), version="25.0")
    assert status == 200 and shape_mismatches(body, fixture("send_response.json")) == []
    status, body = await post(world, fixture("mark_read_request.json"))
    assert (status, body) == (200, fixture("mark_read_response.json"))
    async with world.session.get(
        f"{world.base_url}/whatsapp/v21.0/{PNID}",
        params={"fields": HEALTH_FIELDS},
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as response:
        assert shape_mismatches(await response.json(), fixture("phone_number.json")) == []


@pytest.mark.parametrize(
    ("knobs", "fixture_name", "http_status"),
    [
        ({"rate_limit_rate": 1.0}, "error_rate_limit.json", 429),
        ({"devices": {PNID: DeviceBehaviour(banned_at=0)}}, "error_account_locked.json", 400),
    ],
)
async def test_error_answers_match_the_recorded_examples(
    world_factory: Any, knobs: dict[str, Any], fixture_name: str, http_status: int
) -> None:
    world: World = await world_factory(make_state(**knobs))
    status, body = await post(world, fixture("send_text_request.json"))
    expected = fixture(fixture_name)
    assert status == http_status
    assert shape_mismatches(body, expected) == []
    for name in ("code", "type", "message"):
        assert body["error"][name] == expected["error"][name]


async def test_request_checks_answer_like_graph(world_factory: Any) -> None:
    world: World = await world_factory(make_state())
    status, body = await post(world, fixture("send_text_request.json"), token="bad token!")
    assert status == 401 and shape_mismatches(body, fixture("error_auth.json")) == []
    assert body["error"]["code"] == 190
    no_body = {**fixture("send_text_request.json"), "text": {}}
    status, body = await post(world, no_body)
    assert (status, body["error"]["code"]) == (400, 100)
    assert body["error"]["message"] == fixture("error_invalid_parameter.json")["error"]["message"]
    status, body = await post(
        world, {**fixture("send_text_request.json"), "messaging_product": "sms"}
    )
    assert (status, body["error"]["code"]) == (400, 100)
    status, body = await post(world, fixture("send_text_request.json"), version="latest")
    assert status == 400
    assert world.state.ledger.total == 0


# --- callbacks ---------------------------------------------------------------------------


def statuses(events: list[ProviderEvent]) -> list[StatusEvent]:
    return [e for e in events if isinstance(e, StatusEvent)]


async def test_status_webhooks_are_signed_and_echo_our_key(
    world_factory: Any, receiver: Receiver
) -> None:
    world: World = await world_factory(make_state(receiver, read_probability=1.0))
    result = await world.adapter.send(text("msg-cb"), world.device)
    assert isinstance(result, Accepted)
    await receiver.wait_for(lambda ev: len(statuses(ev)) == 3)
    seen = statuses(receiver.events)
    assert {e.status for e in seen} == {
        DeliveryStatus.SENT,
        DeliveryStatus.DELIVERED,
        DeliveryStatus.READ,
    }
    assert {e.provider_message_id for e in seen} == {result.provider_message_id}
    assert {e.message_key for e in seen} == {"msg-cb"}
    assert receiver.rejected == 0
    sent_body = next(
        b
        for b in receiver.bodies
        if b["entry"][0]["changes"][0]["value"]["statuses"][0]["status"] == "sent"
    )
    assert shape_mismatches(sent_body, fixture("webhook_status_sent.json")) == []


async def test_reply_and_opt_out_arrive_and_later_sends_fail_131050(
    world_factory: Any, receiver: Receiver
) -> None:
    person = RecipientBehaviour(reply_probability=1.0, opt_out_probability=1.0, reply_text="STOP")
    state = make_state(receiver, recipients={"16505551234": person})
    world: World = await world_factory(state)
    await world.adapter.send(text("first"), world.device)
    await receiver.wait_for(
        lambda ev: (
            any(isinstance(e, InboundMessage) for e in ev)
            and any(isinstance(e, OptOutEvent) for e in ev)
        )
    )
    reply = next(e for e in receiver.events if isinstance(e, InboundMessage))
    assert (reply.sender, reply.device_address, reply.text) == ("16505551234", PNID, "STOP")
    inbound_body = next(
        b for b in receiver.bodies if "messages" in b["entry"][0]["changes"][0]["value"]
    )
    assert shape_mismatches(inbound_body, fixture("webhook_message_text.json")) == []
    pref_body = next(
        b for b in receiver.bodies if b["entry"][0]["changes"][0]["field"] == "user_preferences"
    )
    assert shape_mismatches(pref_body, fixture("webhook_user_preferences_stop.json")) == []

    again = await world.adapter.send(text("second"), world.device)
    assert isinstance(again, Accepted)  # accepted, then failed by webhook, as on the real API
    await receiver.wait_for(lambda ev: any(e.error_code == "131050" for e in statuses(ev)))
    failed = next(e for e in statuses(receiver.events) if e.error_code == "131050")
    assert failed.provider_message_id == again.provider_message_id
    assert failed.status is DeliveryStatus.FAILED


async def test_number_not_on_whatsapp_fails_by_webhook(
    world_factory: Any, receiver: Receiver
) -> None:
    world: World = await world_factory(make_state(receiver, not_on_platform_rate=1.0))
    result = await world.adapter.send(text("ghost"), world.device)
    assert isinstance(result, Accepted)
    await receiver.wait_for(lambda ev: bool(statuses(ev)))
    (event,) = statuses(receiver.events)
    assert (event.status, event.error_code, event.message_key) == (
        DeliveryStatus.FAILED,
        "131026",
        "ghost",
    )
    failed_body = receiver.bodies[0]
    assert shape_mismatches(failed_body, fixture("webhook_status_failed.json")) == []


async def test_wrong_app_secret_is_rejected_and_counted(
    world_factory: Any, receiver: Receiver
) -> None:
    state = make_state(receiver)
    state.whatsapp_app_secret = "someone-elses-secret"
    world: World = await world_factory(state)
    await world.adapter.send(text("forged"), world.device)
    await state.scheduler.drain(within=5)
    assert receiver.events == []
    assert receiver.rejected >= state.callback_attempts
    assert state.callback_stats["whatsapp:failed"] >= 1


async def test_subscription_check_round_trip(world_factory: Any, receiver: Receiver) -> None:
    world: World = await world_factory(make_state(receiver))
    assert await check_subscription(world.state, verify_token=VERIFY_TOKEN)
    assert not await check_subscription(world.state, verify_token="wrong")
    assert not await check_subscription(make_state(), verify_token=VERIFY_TOKEN)
