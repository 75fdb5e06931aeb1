"""The real Signal adapter against the sandbox's simulated signal-cli daemon, over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

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
from mcep.channels.signal import SignalAdapter, SseParser
from mcep.sandbox.behaviour import (
    Behaviour,
    Delay,
    DeviceBehaviour,
    LedgerKey,
    RecipientBehaviour,
)
from mcep.sandbox.server import run_sandbox
from mcep.sandbox.state import SandboxState

FIXTURES = Path(__file__).parents[2] / "fixtures" / "providers" / "signal"
ACCOUNT = "+15550009999"
PERSON = "+15550100001"
QUIET = Behaviour(read_probability=0.0)


@dataclass
class Harness:
    state: SandboxState
    base: str
    session: aiohttp.ClientSession
    adapter: SignalAdapter

    def device(self, address: str = ACCOUNT) -> DeviceRef:
        return DeviceRef(
            id=f"dev{address}",
            platform=Platform.SIGNAL,
            address=address,
            base_url=f"{self.base}/signal",
            token="",
        )

    async def send(self, body: str = "hello", *, to: str = PERSON, account: str = ACCOUNT) -> Any:
        message = OutboundMessage(key=f"key-{body}", recipient=to, body=body)
        return await self.adapter.send(message, self.device(account))

    async def rpc(self, payload: Any, content_type: str = "application/json") -> Any:
        async with self.session.post(
            f"{self.base}/signal/api/v1/rpc",
            data=json.dumps(payload) if not isinstance(payload, bytes) else payload,
            headers={"Content-Type": content_type},
        ) as response:
            return response.status, await response.read()


@contextlib.asynccontextmanager
async def sandbox(
    behaviour: Behaviour = QUIET, *, strict: bool = False, accounts: frozenset[str] = frozenset()
) -> AsyncIterator[Harness]:
    state = SandboxState(behaviour=behaviour, strict=strict, tokens={"signal": accounts})
    async with run_sandbox(state) as base, aiohttp.ClientSession() as session:
        yield Harness(state, base, session, SignalAdapter(session))


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


async def collect(
    stream: AsyncGenerator[ProviderEvent, None], *, until: int, within: float = 5.0
) -> list[ProviderEvent]:
    events: list[ProviderEvent] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within):
            async for event in stream:
                events.append(event)
                if len(events) >= until:
                    break
    await stream.aclose()
    return events


# --- sends -----------------------------------------------------------------------------------


async def test_send_returns_the_providers_timestamp_and_is_counted_once() -> None:
    async with sandbox() as h:
        result = await h.send("hello")

        assert isinstance(result, Accepted)
        assert result.provider_message_id.isdigit()
        assert h.state.ledger.count(LedgerKey("signal", ACCOUNT, PERSON, "hello")) == 1
        entry = h.state.ledger.lookup(result.provider_message_id)
        assert entry is not None and entry.key.recipient == PERSON


async def test_plain_rate_limit_to_a_known_contact_is_retry_later_with_the_delay() -> None:
    async with sandbox() as h:
        assert isinstance(await h.send("first"), Accepted)
        h.state.behaviour = replace(h.state.behaviour, rate_limit_rate=1.0, retry_after=42.0)

        result = await h.send("second")

    assert isinstance(result, RetryLater)
    assert result.retry_after == 42


async def test_rate_limit_on_a_first_contact_is_a_challenge_and_a_device_failure() -> None:
    async with sandbox(replace(QUIET, rate_limit_rate=1.0, retry_after=3600.0)) as h:
        result = await h.send("hello")
        assert h.state.ledger.total == 0

    assert isinstance(result, DeviceFailure)
    assert result.retry_after == 3600


async def test_banned_account_is_a_device_failure() -> None:
    banned = QUIET.with_device(ACCOUNT, DeviceBehaviour(banned_at=0.0))
    async with sandbox(banned) as h:
        result = await h.send("hello")
    assert isinstance(result, DeviceFailure)


async def test_strict_daemon_refuses_accounts_it_does_not_hold() -> None:
    async with sandbox(strict=True, accounts=frozenset({ACCOUNT})) as h:
        refused = await h.send("hello", account="+15550000000")
        accepted = await h.send("hello")
        held = await h.adapter.probe(h.device())
        other = await h.adapter.probe(h.device("+15550000000"))

    assert isinstance(refused, DeviceFailure)
    assert isinstance(accepted, Accepted)
    assert held.status is HealthStatus.OK
    assert other.status is HealthStatus.DOWN


async def test_probe_of_an_open_daemon_is_ok() -> None:
    async with sandbox() as h:
        assert (await h.adapter.probe(h.device())).status is HealthStatus.OK


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        (QUIET.with_recipient(PERSON, RecipientBehaviour(on_platform=False)), PermanentFailure),
        (replace(QUIET, transient_error_rate=1.0), RetryLater),
        (QUIET.with_device(ACCOUNT, DeviceBehaviour(offline=((0.0, 1e9),))), RetryLater),
    ],
)
async def test_recipient_and_network_failures(behaviour: Behaviour, expected: type) -> None:
    async with sandbox(behaviour) as h:
        result = await h.send("hello")
        assert h.state.ledger.total == 0
    assert isinstance(result, expected)


# --- receipts and replies through the event stream -------------------------------------------


async def test_receipts_move_the_message_to_delivered_and_read_and_replies_arrive() -> None:
    behaviour = Behaviour(
        read_probability=1.0,
        reply_probability=1.0,
        recipients={PERSON: RecipientBehaviour(reply_text="Yes please")},
    )
    async with sandbox(behaviour) as h:
        stream = h.adapter.events(h.device())
        listener = asyncio.create_task(collect(stream, until=3))
        await asyncio.sleep(0.2)  # the stream is live-only, like the daemon's
        result = await h.send("hello")
        events = await listener

    assert isinstance(result, Accepted)
    statuses = [e for e in events if isinstance(e, StatusEvent)]
    assert [(e.provider_message_id, e.status) for e in statuses] == [
        (result.provider_message_id, DeliveryStatus.DELIVERED),
        (result.provider_message_id, DeliveryStatus.READ),
    ]
    [reply] = [e for e in events if isinstance(e, InboundMessage)]
    assert (reply.sender, reply.device_address, reply.text) == (PERSON, ACCOUNT, "Yes please")


async def test_an_opt_out_arrives_as_a_stop_message() -> None:
    behaviour = Behaviour(read_probability=0.0, opt_out_probability=1.0)
    async with sandbox(behaviour) as h:
        listener = asyncio.create_task(collect(h.adapter.events(h.device()), until=2))
        await asyncio.sleep(0.2)
        await h.send("hello")
        events = await listener

    assert [e.text for e in events if isinstance(e, InboundMessage)] == ["STOP"]


# --- the wire, field for field ----------------------------------------------------------------


async def test_send_answer_matches_the_recorded_response_field_for_field() -> None:
    async with sandbox() as h:
        request = fixture("rpc_send_request.json")
        request["params"].update(account=ACCOUNT, recipient=[PERSON])
        status, body = await h.rpc(request)

    assert status == 200
    answer = json.loads(body)
    assert shape(answer) == shape({**fixture("rpc_send_response.json"), "id": 4})
    assert answer["id"] == 4


@pytest.mark.parametrize(
    ("behaviour", "name"),
    [
        (replace(QUIET, rate_limit_rate=1.0), "rpc_error_proof_required.json"),
        (
            QUIET.with_recipient(PERSON, RecipientBehaviour(on_platform=False)),
            "rpc_error_unregistered.json",
        ),
        (replace(QUIET, transient_error_rate=1.0), "rpc_error_send_failed.json"),
    ],
)
async def test_error_answers_match_the_recorded_errors(behaviour: Behaviour, name: str) -> None:
    recorded = fixture(name)
    async with sandbox(behaviour) as h:
        request = {
            "jsonrpc": "2.0",
            "method": "send",
            "params": {"account": ACCOUNT, "recipient": [PERSON], "message": "hi"},
            "id": recorded["id"],
        }
        _, body = await h.rpc(request)

    answer = json.loads(body)
    assert shape(answer) == shape(recorded)
    assert answer["error"]["code"] == recorded["error"]["code"]


async def test_plain_rate_limit_answer_matches_the_recorded_error() -> None:
    async with sandbox() as h:
        await h.send("first")
        h.state.behaviour = replace(h.state.behaviour, rate_limit_rate=1.0, retry_after=90.0)
        request = {
            "jsonrpc": "2.0",
            "method": "send",
            "params": {"account": ACCOUNT, "recipient": [PERSON], "message": "again"},
            "id": "msg-0001",
        }
        _, body = await h.rpc(request)

    recorded = fixture("rpc_error_rate_limit.json")
    answer = json.loads(body)
    assert shape(answer) == shape(recorded)
    assert answer["error"]["data"]["response"]["results"][0]["retryAfterSeconds"] == 90


async def test_unknown_account_answer_is_the_recorded_one() -> None:
    async with sandbox(strict=True, accounts=frozenset({ACCOUNT})) as h:
        request = {
            "jsonrpc": "2.0",
            "method": "send",
            "params": {"account": "+15550000000", "recipient": [PERSON], "message": "hi"},
            "id": "msg-0001",
        }
        _, body = await h.rpc(request)
    assert json.loads(body) == fixture("rpc_error_unknown_account.json")


async def test_documented_invalid_request_gets_the_documented_answer() -> None:
    async with sandbox() as h:
        status, body = await h.rpc({"jsonrpc": "2.0"})
    assert status == 200
    assert json.loads(body) == fixture("rpc_error_invalid_request.json")


async def test_http_level_checks_of_the_rpc_endpoint() -> None:
    async with sandbox() as h:
        wrong_type = await h.rpc({"jsonrpc": "2.0"}, content_type="text/plain")
        not_json = await h.rpc(b"{nope")
        notification = await h.rpc({"jsonrpc": "2.0", "method": "version"})
        batch = await h.rpc(
            [
                {"jsonrpc": "2.0", "method": "version", "id": 1},
                {"jsonrpc": "2.0", "method": "x", "id": 2},
            ]
        )
        unknown = await h.rpc({"jsonrpc": "2.0", "method": "listGroups", "id": 3})
        async with h.session.get(f"{h.base}/signal/api/v1/rpc") as response:
            get_status = response.status
        async with h.session.get(f"{h.base}/signal/api/v1/check") as response:
            check = (response.status, await response.read())

    assert wrong_type == (415, b"")
    assert json.loads(not_json[1])["error"]["code"] == -32700
    assert json.loads(not_json[1])["id"] is None
    assert notification == (201, b"")
    assert [a.get("error", {}).get("code") for a in json.loads(batch[1])] == [None, -32601]
    assert json.loads(unknown[1])["error"] == {
        "code": -32601,
        "message": "Method not implemented",
        "data": None,
    }
    assert get_status == 405
    assert check == (200, b"")


async def read_sse(
    h: Harness, *, count: int, last_event_id: str | None = None, account: str = ACCOUNT
) -> tuple[str, list[Any]]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    url = f"{h.base}/signal/api/v1/events"
    parser, events = SseParser(), []
    async with (
        asyncio.timeout(5),
        h.session.get(url, params={"account": account}, headers=headers) as response,
    ):
        content_type = response.headers["Content-Type"]
        async for raw in response.content:
            event = parser.feed(raw.decode().rstrip("\n"))
            if event is not None:
                events.append(event)
                if len(events) == count:
                    break
    return content_type, events


async def test_event_stream_frames_match_the_recorded_envelopes_and_resume_by_id() -> None:
    behaviour = Behaviour(
        read_probability=1.0,
        reply_probability=1.0,
        deliver_delay=Delay(0.05, 0.05),
        read_delay=Delay(0.05, 0.05),
        reply_delay=Delay(0.05, 0.05),
    )
    async with sandbox(behaviour) as h:
        reader = asyncio.create_task(read_sse(h, count=3))
        await asyncio.sleep(0.2)
        await h.send("hello")
        content_type, events = await reader
        _, replayed = await read_sse(h, count=2, last_event_id=events[0].id)

    assert content_type.startswith("text/event-stream")
    assert [e.event for e in events] == ["receive"] * 3
    receipt, _, reply = (json.loads(e.data) for e in events)
    assert shape(receipt) == shape(fixture("event_receive_receipt.json"))
    assert shape(reply) == shape(fixture("event_receive_data_message.json"))
    assert [e.id for e in replayed] == [e.id for e in events[1:]]


async def test_strict_daemon_refuses_event_streams_of_unknown_accounts() -> None:
    async with sandbox(strict=True, accounts=frozenset({ACCOUNT})) as h:
        url = f"{h.base}/signal/api/v1/events"
        async with h.session.get(url, params={"account": "+15550000000"}) as response:
            assert (response.status, await response.read()) == (400, b"")
