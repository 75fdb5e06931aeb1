"""BlueBubbles adapter over real HTTP against small fake servers: auth, timeouts, secrecy."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from mcep.channels.base import (
    Accepted,
    ChannelAdapter,
    DeviceFailure,
    DeviceRef,
    HealthStatus,
    OutboundMessage,
    Platform,
    RetryLater,
)
from mcep.channels.imessage import IMessageAdapter

PASSWORD = "pw-7Hq2-never-print-me"
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
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


def device(base_url: str) -> DeviceRef:
    return DeviceRef(
        id="mac-1",
        platform=Platform.IMESSAGE,
        address="sender@icloud.example",
        base_url=base_url,
        token=PASSWORD,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


MESSAGE = OutboundMessage(key="key-1", recipient="+15551234567", body="hi")


async def test_password_goes_as_query_parameter_and_body_is_the_apple_script_send(
    session: aiohttp.ClientSession,
) -> None:
    seen: list[tuple[str | None, dict[str, str]]] = []

    async def send(request: web.Request) -> web.Response:
        seen.append((request.query.get("password"), await request.json()))
        data = {"guid": "G-1", "tempGuid": "key-1", "error": 0}
        return web.json_response({"status": 200, "message": "Message sent!", "data": data})

    runner, base = await serve({("POST", "/api/v1/message/text"): send})
    try:
        result = await IMessageAdapter(session).send(MESSAGE, device(base + "/"))
    finally:
        await runner.cleanup()

    assert result == Accepted(provider_message_id="G-1")
    assert seen == [
        (
            PASSWORD,
            {
                "chatGuid": "iMessage;-;+15551234567",
                "tempGuid": "key-1",
                "message": "hi",
                "method": "apple-script",
            },
        )
    ]


async def test_a_hanging_send_is_retry_later_and_never_shows_the_password(
    session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response({})

    runner, base = await serve({("POST", "/api/v1/message/text"): hang})
    caplog.set_level(logging.DEBUG)
    try:
        result = await IMessageAdapter(session, send_timeout=0.2).send(MESSAGE, device(base))
    finally:
        await runner.cleanup()

    assert isinstance(result, RetryLater)
    assert PASSWORD not in repr(result)
    assert PASSWORD not in caplog.text


async def test_connection_refused_is_retry_later_and_never_shows_the_password(
    session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    dead = device(f"http://127.0.0.1:{free_port()}")

    result = await IMessageAdapter(session).send(MESSAGE, dead)
    health = await IMessageAdapter(session).probe(dead)

    assert isinstance(result, RetryLater)
    assert health.status is HealthStatus.DOWN
    for text in (repr(result), repr(health), repr(dead), caplog.text):
        assert PASSWORD not in text


async def test_a_refused_password_is_a_device_failure_and_a_down_probe(
    session: aiohttp.ClientSession,
) -> None:
    body = {
        "status": 401,
        "message": "You are not authorized to access this resource",
        "error": {"type": "Authentication Error", "message": "Unauthorized"},
    }

    async def refuse(request: web.Request) -> web.Response:
        return web.json_response(body, status=401)

    runner, base = await serve(
        {("POST", "/api/v1/message/text"): refuse, ("GET", "/api/v1/ping"): refuse}
    )
    try:
        adapter = IMessageAdapter(session)
        result = await adapter.send(MESSAGE, device(base))
        health = await adapter.probe(device(base))
    finally:
        await runner.cleanup()

    assert isinstance(result, DeviceFailure)
    assert PASSWORD not in repr(result)
    assert health.status is HealthStatus.DOWN


async def test_ping_pong_is_healthy(session: aiohttp.ClientSession) -> None:
    async def ping(request: web.Request) -> web.Response:
        assert request.query.get("password") == PASSWORD
        return web.json_response({"status": 200, "message": "Ping received!", "data": "pong"})

    runner, base = await serve({("GET", "/api/v1/ping"): ping})
    try:
        health = await IMessageAdapter(session).probe(device(base))
    finally:
        await runner.cleanup()

    assert health.status is HealthStatus.OK


async def test_register_webhook_posts_url_and_events(session: aiohttp.ClientSession) -> None:
    seen: list[object] = []

    async def create(request: web.Request) -> web.Response:
        seen.append(await request.json())
        return web.json_response({"status": 200, "message": "Successfully created webhook!"})

    runner, base = await serve({("POST", "/api/v1/webhook"): create})
    try:
        ok = await IMessageAdapter(session).register_webhook(
            device(base), url="https://app.example/hooks/imessage/mac-1/s3cr3t"
        )
    finally:
        await runner.cleanup()

    assert ok
    assert seen == [
        {
            "url": "https://app.example/hooks/imessage/mac-1/s3cr3t",
            "events": ["new-message", "updated-message", "message-send-error"],
        }
    ]


async def test_adapter_satisfies_the_channel_protocol(session: aiohttp.ClientSession) -> None:
    adapter = IMessageAdapter(session)
    assert isinstance(adapter, ChannelAdapter)
    assert adapter.platform is Platform.IMESSAGE
