"""signal-cli adapter over real HTTP against small fake daemons: timeouts, probes, the stream."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from mcep.channels.base import (
    ChannelAdapter,
    DeliveryStatus,
    DeviceRef,
    HealthStatus,
    InboundMessage,
    OutboundMessage,
    Platform,
    ProviderEvent,
    RetryLater,
    StatusEvent,
)
from mcep.channels.signal import SignalAdapter

FIXTURES = Path(__file__).parents[2] / "fixtures" / "providers" / "signal"
RECEIPT = (FIXTURES / "event_receive_receipt.json").read_text().strip()
MESSAGE = (FIXTURES / "event_receive_data_message.json").read_text().strip()
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def serve(routes: dict[tuple[str, str], Handler]) -> tuple[web.AppRunner, str]:
    app = web.Application()
    for (method, path), handler in routes.items():
        app.router.add_route(method, path, handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


def device(base_url: str, token: str = "") -> DeviceRef:
    return DeviceRef(
        id="dev-1",
        platform=Platform.SIGNAL,
        address="+15550009999",
        base_url=base_url,
        token=token,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def take(stream: AsyncGenerator[ProviderEvent, None], n: int) -> list[ProviderEvent]:
    events: list[ProviderEvent] = []
    async with asyncio.timeout(5):
        async for event in stream:
            events.append(event)
            if len(events) == n:
                break
    return events


# --- send and probe --------------------------------------------------------------------------


async def test_a_hanging_daemon_is_retry_later_without_the_url(
    session: aiohttp.ClientSession,
) -> None:
    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response({})

    runner, base = await serve({("POST", "/api/v1/rpc"): hang})
    try:
        adapter = SignalAdapter(session, send_timeout=0.2)
        result = await adapter.send(OutboundMessage("k", "+1555", "hi"), device(base))
    finally:
        await runner.cleanup()

    assert isinstance(result, RetryLater)
    assert "127.0.0.1" not in result.reason


async def test_an_unreachable_daemon_is_retry_later(session: aiohttp.ClientSession) -> None:
    adapter = SignalAdapter(session)
    result = await adapter.send(
        OutboundMessage("k", "+1555", "hi"), device(f"http://127.0.0.1:{free_port()}")
    )
    assert isinstance(result, RetryLater)


async def test_bearer_token_is_sent_only_when_configured(session: aiohttp.ClientSession) -> None:
    seen: list[str | None] = []

    async def rpc(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        assert request.content_type == "application/json"
        return web.json_response({"jsonrpc": "2.0", "result": {"timestamp": 7}, "id": "k"})

    runner, base = await serve({("POST", "/api/v1/rpc"): rpc})
    try:
        adapter = SignalAdapter(session)
        await adapter.send(OutboundMessage("k", "+1555", "hi"), device(base, token="s3cret"))
        await adapter.send(OutboundMessage("k", "+1555", "hi"), device(base))
    finally:
        await runner.cleanup()

    assert seen == ["Bearer s3cret", None]


async def test_probe_is_ok_only_when_the_daemon_holds_the_account(
    session: aiohttp.ClientSession,
) -> None:
    async def check(request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def rpc(request: web.Request) -> web.Response:
        body = await request.json()
        assert body["method"] == "listAccounts"
        accounts = [{"number": "+15550009999"}]
        return web.json_response({"jsonrpc": "2.0", "result": accounts, "id": body["id"]})

    runner, base = await serve({("GET", "/api/v1/check"): check, ("POST", "/api/v1/rpc"): rpc})
    try:
        adapter = SignalAdapter(session)
        held = await adapter.probe(device(base))
        other = await adapter.probe(
            DeviceRef("d2", Platform.SIGNAL, "+15550001111", base_url=base, token="")
        )
    finally:
        await runner.cleanup()

    assert held.status is HealthStatus.OK
    assert other.status is HealthStatus.DOWN


async def test_probe_of_a_dead_daemon_is_down(session: aiohttp.ClientSession) -> None:
    adapter = SignalAdapter(session)
    health = await adapter.probe(device(f"http://127.0.0.1:{free_port()}"))
    assert health.status is HealthStatus.DOWN


# --- the event stream ------------------------------------------------------------------------


async def test_stream_survives_keep_alives_split_lines_and_reconnects_with_last_event_id(
    session: aiohttp.ClientSession,
) -> None:
    requests: list[tuple[str | None, str | None]] = []

    async def events(request: web.Request) -> web.StreamResponse:
        requests.append((request.headers.get("Last-Event-ID"), request.query.get("account")))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if len(requests) == 1:
            frame = f":\nid:1\nevent:receive\ndata:{RECEIPT}\n\n".encode()
            for i in range(0, len(frame), 17):  # lines split across network reads
                await response.write(frame[i : i + 17])
            return response  # the connection drops
        await response.write(f":\n\nid:2\nevent:receive\ndata:{MESSAGE}\n\n".encode())
        await asyncio.sleep(5)
        return response

    runner, base = await serve({("GET", "/api/v1/events"): events})
    try:
        adapter = SignalAdapter(session)
        stream = adapter.events(device(base), reconnect_delay=0.01)
        got = await take(stream, 3)
        await stream.aclose()
    finally:
        await runner.cleanup()

    assert [type(e) for e in got] == [StatusEvent, StatusEvent, InboundMessage]
    assert {e.status for e in got if isinstance(e, StatusEvent)} == {DeliveryStatus.DELIVERED}
    assert requests == [(None, "+15550009999"), ("1", "+15550009999")]


async def test_stream_retries_after_an_error_status(session: aiohttp.ClientSession) -> None:
    calls = 0

    async def events(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        if calls == 1:
            return web.Response(status=400)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(f"event:receive\ndata:{MESSAGE}\n\n".encode())
        await asyncio.sleep(5)
        return response

    runner, base = await serve({("GET", "/api/v1/events"): events})
    try:
        stream = SignalAdapter(session).events(device(base), reconnect_delay=0.01)
        [event] = await take(stream, 1)
        await stream.aclose()
    finally:
        await runner.cleanup()

    assert isinstance(event, InboundMessage)
    assert calls == 2


async def test_a_silent_stream_is_dropped_and_reopened(session: aiohttp.ClientSession) -> None:
    calls = 0

    async def events(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if calls > 1:
            payload = json.dumps(json.loads(MESSAGE))
            await response.write(f"event:receive\ndata:{payload}\n\n".encode())
        await asyncio.sleep(5)  # no keep-alive: the client must give up on its own
        return response

    runner, base = await serve({("GET", "/api/v1/events"): events})
    try:
        adapter = SignalAdapter(session, idle_timeout=0.2)
        stream = adapter.events(device(base), reconnect_delay=0.01)
        [event] = await take(stream, 1)
        await stream.aclose()
    finally:
        await runner.cleanup()

    assert isinstance(event, InboundMessage)
    assert calls == 2


async def test_adapter_satisfies_the_channel_protocol(session: aiohttp.ClientSession) -> None:
    adapter = SignalAdapter(session)
    assert isinstance(adapter, ChannelAdapter)
    assert adapter.platform is Platform.SIGNAL
