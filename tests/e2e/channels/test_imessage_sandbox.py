"""The real iMessage adapter against the sandbox's simulated BlueBubbles server, over HTTP.

Webhooks are received by a small loopback receiver built the way the app's route must be: a
per-device secret URL checked with ``verify_webhook_secret``, then ``parse_webhook``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
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
    OutboundMessage,
    PermanentFailure,
    Platform,
    ProviderEvent,
    RetryLater,
    StatusEvent,
)
from mcep.channels.imessage import IMessageAdapter, parse_webhook, verify_webhook_secret
from mcep.sandbox.behaviour import (
    Behaviour,
    Delay,
    DeviceBehaviour,
    LedgerKey,
    RecipientBehaviour,
)
from mcep.sandbox.server import run_sandbox
from mcep.sandbox.state import SandboxState

FIXTURES = Path(__file__).parents[2] / "fixtures" / "providers" / "imessage"
ACCOUNT = "sender@icloud.example"
PERSON = "+15551234567"
PASSWORD = "bb-password-1"
SECRET = "6f1c2b9e4d8a0c3e"
QUIET = Behaviour(read_probability=0.0)


@dataclass
class Receiver:
    """The app side of BlueBubbles webhooks: one secret URL per device."""

    secrets: dict[str, str]
    events: list[ProviderEvent] = field(default_factory=list)
    bodies: list[Any] = field(default_factory=list)
    rejected: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        device = request.match_info["device"]
        if not verify_webhook_secret(self.secrets.get(device, ""), request.match_info["secret"]):
            self.rejected += 1
            return web.Response(status=403)
        body = await request.read()
        self.bodies.append(json.loads(body))
        self.events += parse_webhook(body, device_address=device)
        self.arrived.set()
        return web.Response(status=200)

    async def wait_for(self, n: int, within: float = 5.0) -> list[ProviderEvent]:
        async with asyncio.timeout(within):
            while len(self.events) < n:
                self.arrived.clear()
                await self.arrived.wait()
        return self.events


@dataclass
class Harness:
    state: SandboxState
    base: str
    hooks: str
    session: aiohttp.ClientSession
    adapter: IMessageAdapter
    receiver: Receiver

    def device(self, *, password: str = PASSWORD, server: str = ACCOUNT) -> DeviceRef:
        return DeviceRef(
            id="mac-1",
            platform=Platform.IMESSAGE,
            address=server,
            base_url=f"{self.base}/imessage/{server}",
            token=password,
        )

    async def send(self, body: str = "hello", *, key: str = "key-1", **device: str) -> Any:
        message = OutboundMessage(key=key, recipient=PERSON, body=body)
        return await self.adapter.send(message, self.device(**device))

    async def raw(self, method: str, path: str, *, query: dict[str, str], body: Any = None) -> Any:
        url = f"{self.base}/imessage/{ACCOUNT}{path}"
        async with self.session.request(method, url, params=query, json=body) as response:
            return response.status, await response.read()


@contextlib.asynccontextmanager
async def sandbox(behaviour: Behaviour = QUIET, *, strict: bool = False) -> AsyncIterator[Harness]:
    state = SandboxState(
        behaviour=behaviour, strict=strict, tokens={"imessage": frozenset({PASSWORD})}
    )
    receiver = Receiver(secrets={ACCOUNT: SECRET})
    app = web.Application()
    app.router.add_post("/hooks/imessage/{device}/{secret}", receiver.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    hooks = f"http://127.0.0.1:{runner.addresses[0][1]}/hooks/imessage"
    try:
        async with run_sandbox(state) as base, aiohttp.ClientSession() as session:
            yield Harness(state, base, hooks, session, IMessageAdapter(session), receiver)
    finally:
        await runner.cleanup()


def shape(value: Any) -> Any:
    """Field names and JSON types, recursively: what "field for field" compares."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if isinstance(value, bool) or value is None:
        return type(value).__name__
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


# --- sends -----------------------------------------------------------------------------------


async def test_send_returns_the_message_guid_and_is_counted_by_temp_guid() -> None:
    async with sandbox() as h:
        result = await h.send("hello", key="key-1")

        assert isinstance(result, Accepted)
        assert h.state.ledger.count(LedgerKey("imessage", ACCOUNT, PERSON, "key-1")) == 1
        entry = h.state.ledger.lookup(result.provider_message_id)
        assert entry is not None and entry.key.message_key == "key-1"


async def test_the_same_key_in_flight_twice_goes_out_once() -> None:
    async with sandbox(replace(QUIET, latency=Delay(0.3, 0.3))) as h:
        first, second = await asyncio.gather(h.send(key="key-1"), h.send(key="key-1"))
        count = h.state.ledger.count(LedgerKey("imessage", ACCOUNT, PERSON, "key-1"))

    results = sorted([first, second], key=lambda r: type(r).__name__)
    assert isinstance(results[0], Accepted)
    assert isinstance(results[1], RetryLater) and results[1].code == "already_queued"
    assert count == 1


async def test_wrong_password_in_strict_mode_is_a_device_failure_and_a_down_probe() -> None:
    async with sandbox(strict=True) as h:
        refused = await h.send(password="guess")
        health = await h.adapter.probe(h.device(password="guess"))
        accepted = await h.send(key="key-2")
        ok = await h.adapter.probe(h.device())

    assert isinstance(refused, DeviceFailure)
    assert "guess" not in repr(refused)
    assert health.status is HealthStatus.DOWN
    assert isinstance(accepted, Accepted)
    assert ok.status is HealthStatus.OK


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        (QUIET.with_recipient(PERSON, RecipientBehaviour(on_platform=False)), PermanentFailure),
        (QUIET.with_device(ACCOUNT, DeviceBehaviour(banned_at=0.0)), DeviceFailure),
        (replace(QUIET, transient_error_rate=1.0), RetryLater),
        (replace(QUIET, rate_limit_rate=1.0), RetryLater),
        (QUIET.with_device(ACCOUNT, DeviceBehaviour(offline=((0.0, 1e9),))), RetryLater),
    ],
)
async def test_failures_are_classified(behaviour: Behaviour, expected: type) -> None:
    async with sandbox(behaviour) as h:
        result = await h.send()
        assert h.state.ledger.total == 0
    assert isinstance(result, expected)


async def test_an_offline_mac_probes_down() -> None:
    offline = QUIET.with_device(ACCOUNT, DeviceBehaviour(offline=((0.0, 1e9),)))
    async with sandbox(offline) as h:
        assert (await h.adapter.probe(h.device())).status is HealthStatus.DOWN


# --- webhooks --------------------------------------------------------------------------------


async def test_webhooks_move_the_message_to_delivered_and_read_and_bring_replies() -> None:
    behaviour = Behaviour(
        read_probability=1.0,
        reply_probability=1.0,
        recipients={PERSON: RecipientBehaviour(reply_text="Yes please")},
    )
    async with sandbox(behaviour) as h:
        url = f"{h.hooks}/{ACCOUNT}/{SECRET}"
        assert await h.adapter.register_webhook(h.device(), url=url)
        result = await h.send()
        # delivered; delivered again with read; the reply
        events = await h.receiver.wait_for(4)

    assert isinstance(result, Accepted)
    progress = {(e.provider_message_id, e.status) for e in events if isinstance(e, StatusEvent)}
    assert progress == {
        (result.provider_message_id, DeliveryStatus.DELIVERED),
        (result.provider_message_id, DeliveryStatus.READ),
    }
    [reply] = [e for e in events if isinstance(e, InboundMessage)]
    assert (reply.sender, reply.device_address, reply.text) == (PERSON, ACCOUNT, "Yes please")


async def test_webhook_bodies_match_the_recorded_events_field_for_field() -> None:
    behaviour = Behaviour(
        read_probability=1.0,
        reply_probability=1.0,
        deliver_delay=Delay(0.05, 0.05),
        read_delay=Delay(0.05, 0.05),
        reply_delay=Delay(0.05, 0.05),
    )
    async with sandbox(behaviour) as h:
        await h.adapter.register_webhook(h.device(), url=f"{h.hooks}/{ACCOUNT}/{SECRET}")
        await h.send()
        await h.receiver.wait_for(4)
        delivered, read, reply = h.receiver.bodies

    assert shape(delivered) == shape(fixture("webhook_updated_message_delivered.json"))
    assert shape(read) == shape(fixture("webhook_updated_message_read.json"))
    assert shape(reply) == shape(fixture("webhook_new_message.json"))


async def test_a_wrong_secret_url_is_rejected_and_yields_no_events() -> None:
    async with sandbox(Behaviour(read_probability=1.0)) as h:
        await h.adapter.register_webhook(h.device(), url=f"{h.hooks}/{ACCOUNT}/not-the-secret")
        await h.send()
        await h.state.scheduler.drain()

    assert h.receiver.events == []
    assert h.receiver.rejected > 0
    assert h.state.callback_stats["imessage:failed"] > 0


async def test_webhooks_only_carry_the_registered_events() -> None:
    behaviour = Behaviour(read_probability=1.0, reply_probability=1.0)
    async with sandbox(behaviour) as h:
        url = f"{h.hooks}/{ACCOUNT}/{SECRET}"
        assert await h.adapter.register_webhook(h.device(), url=url, events=("new-message",))
        await h.send()
        await h.state.scheduler.drain()

    assert [b["type"] for b in h.receiver.bodies] == ["new-message"]


# --- the wire, field for field ----------------------------------------------------------------


async def test_ping_is_the_recorded_answer() -> None:
    async with sandbox() as h:
        status, body = await h.raw("GET", "/api/v1/ping", query={"password": PASSWORD})
    assert (status, json.loads(body)) == (200, fixture("ping_response.json"))


async def test_send_answer_matches_the_recorded_response_field_for_field() -> None:
    async with sandbox() as h:
        request = fixture("send_text_request.json")
        status, body = await h.raw(
            "POST", "/api/v1/message/text", query={"password": PASSWORD}, body=request
        )

    recorded = fixture("send_text_response.json")
    answer = json.loads(body)
    assert status == 200
    assert shape(answer) == shape(recorded)
    assert answer["data"]["tempGuid"] == request["tempGuid"]
    assert answer["data"]["text"] == request["message"]


async def test_password_errors_are_the_recorded_answers() -> None:
    async with sandbox(strict=True) as h:
        missing = await h.raw("GET", "/api/v1/ping", query={})
        wrong = await h.raw("GET", "/api/v1/ping", query={"password": "guess"})

    assert (missing[0], json.loads(missing[1])) == (401, fixture("error_missing_password.json"))
    assert (wrong[0], json.loads(wrong[1])) == (401, fixture("error_wrong_password.json"))


async def test_validation_error_is_the_recorded_answer() -> None:
    async with sandbox() as h:
        request = {k: v for k, v in fixture("send_text_request.json").items() if k != "tempGuid"}
        status, body = await h.raw(
            "POST", "/api/v1/message/text", query={"password": PASSWORD}, body=request
        )
    assert (status, json.loads(body)) == (400, fixture("error_temp_guid_required.json"))


@pytest.mark.parametrize(
    ("behaviour", "status", "name"),
    [
        (
            QUIET.with_recipient(PERSON, RecipientBehaviour(on_platform=False)),
            500,
            "error_not_registered.json",
        ),
        (replace(QUIET, transient_error_rate=1.0), 504, "error_gateway_timeout.json"),
    ],
)
async def test_send_errors_match_the_recorded_answers(
    behaviour: Behaviour, status: int, name: str
) -> None:
    async with sandbox(behaviour) as h:
        answer = await h.raw(
            "POST",
            "/api/v1/message/text",
            query={"password": PASSWORD},
            body=fixture("send_text_request.json"),
        )
    assert answer[0] == status
    assert shape(json.loads(answer[1])) == shape(fixture(name))


async def test_webhook_registration_matches_the_recorded_answer() -> None:
    async with sandbox() as h:
        status, body = await h.raw(
            "POST",
            "/api/v1/webhook",
            query={"password": PASSWORD},
            body=fixture("webhook_create_request.json"),
        )
        bad = await h.raw(
            "POST",
            "/api/v1/webhook",
            query={"password": PASSWORD},
            body={"url": "ftp://x", "events": ["new-message"]},
        )

    recorded = fixture("webhook_create_response.json")
    answer = json.loads(body)
    assert status == 200
    assert shape(answer) == shape(recorded)
    assert answer["data"]["events"] == recorded["data"]["events"]
    assert bad[0] == 400
    assert json.loads(bad[1])["error"]["message"] == "Webhook URL must include an HTTP scheme!"


async def test_a_single_server_is_also_served_without_a_server_segment() -> None:
    async with sandbox() as h:
        url = f"{h.base}/imessage/api/v1/ping"
        async with h.session.get(url, params={"password": PASSWORD}) as response:
            assert (response.status, await response.json()) == (200, fixture("ping_response.json"))
