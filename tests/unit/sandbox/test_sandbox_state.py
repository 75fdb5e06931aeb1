"""Sandbox run state: scheduler, mailboxes, tokens, and the embedded server."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from mcep.sandbox.behaviour import Behaviour, DecisionKind, DeviceBehaviour, LedgerKey
from mcep.sandbox.server import run_sandbox
from mcep.sandbox.state import CallbackScheduler, Mailbox, SandboxState


async def test_scheduler_runs_actions_after_their_delay_and_drains() -> None:
    scheduler, seen = CallbackScheduler(), []

    async def note(value: int) -> None:
        seen.append(value)
        if value == 1:  # scheduled during a drain: still awaited
            scheduler.schedule(0.01, lambda: note(3))

    scheduler.schedule(0.05, lambda: note(2))
    scheduler.schedule(0.0, lambda: note(1))
    assert scheduler.pending == 2
    await scheduler.drain(within=2)
    assert seen == [1, 3, 2]
    assert scheduler.pending == 0


async def test_scheduler_counts_failures_and_closes_cleanly() -> None:
    scheduler = CallbackScheduler()

    async def boom() -> None:
        raise RuntimeError("callback broke")

    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.sleep(3600)

    scheduler.schedule(0, boom)
    scheduler.schedule(0, forever)
    await started.wait()
    await asyncio.sleep(0)
    assert scheduler.failures == 1
    await scheduler.aclose()
    assert scheduler.pending == 0
    scheduler.schedule(0, boom)  # ignored once closed
    assert scheduler.pending == 0


async def test_mailbox_confirms_and_long_polls() -> None:
    box = Mailbox()
    assert await box.wait(max_wait=0.01) == []
    first = box.put({"n": 1})
    box.put({"n": 2})
    assert [item["n"] for _, item in box.peek()] == [1, 2]
    box.confirm(first + 1)
    assert [item["n"] for _, item in box.peek()] == [2]

    async def later() -> None:
        await asyncio.sleep(0.05)
        box.put({"n": 3})

    task = asyncio.create_task(later())
    got = await box.wait(from_id=first + 2, max_wait=2)
    await task
    assert [item["n"] for _, item in got] == [3]


def test_strict_mode_accepts_only_configured_tokens() -> None:
    lax = SandboxState()
    assert lax.authorized("telegram", "anything")
    strict = SandboxState(strict=True, tokens={"telegram": frozenset({"1:good"})})
    assert strict.authorized("telegram", "1:good")
    assert not strict.authorized("telegram", "1:bad")
    assert not strict.authorized("whatsapp", "1:good")


def test_decide_uses_the_clock_and_counts_decisions() -> None:
    now = [0.0]
    behaviour = Behaviour(devices={"d": DeviceBehaviour(banned_at=10.0)})
    state = SandboxState(behaviour=behaviour, clock=lambda: now[0])
    kwargs = {"platform": "whatsapp", "device": "d", "recipient": "1", "token": "t"}
    assert state.decide(**kwargs).kind is DecisionKind.ACCEPT
    now[0] = 10.0
    assert state.decide(**kwargs).kind is DecisionKind.DEVICE_BANNED
    state.mark_opted_out(platform="whatsapp", device="e", recipient="1")
    assert state.decide(**{**kwargs, "device": "e"}).kind is DecisionKind.OPTED_OUT
    assert state.ledger.decisions()[("whatsapp", DecisionKind.ACCEPT)] == 1


def test_accept_records_in_the_ledger() -> None:
    state = SandboxState()
    key = LedgerKey("telegram", "1", "2", "hi")
    state.accept(key, provider_message_id="x")
    assert state.ledger.count(key) == 1
    assert "token" not in repr(state)


async def test_run_sandbox_serves_on_an_ephemeral_port_and_stops() -> None:
    state = SandboxState()
    async with run_sandbox(state) as base_url:
        assert base_url.startswith("http://127.0.0.1:")
        port = int(base_url.rsplit(":", 1)[1])
        assert port > 0
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base_url}/_sandbox/stats") as response:
                assert response.status == 200
                assert (await response.json())["accepted"] == 0
            async with session.get(f"{base_url}/nowhere") as response:
                assert response.status == 404
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(f"{base_url}/_sandbox/stats")


async def test_two_sandboxes_can_run_side_by_side() -> None:
    async with run_sandbox(SandboxState()) as one, run_sandbox(SandboxState()) as two:
        assert one != two


async def test_a_taken_port_is_an_os_error() -> None:
    async with run_sandbox(SandboxState()) as base_url:
        port = int(base_url.rsplit(":", 1)[1])
        with pytest.raises(OSError):
            async with run_sandbox(SandboxState(), port=port):
                pass
