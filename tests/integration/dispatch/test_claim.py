"""Claiming due messages with a lease, on SQLite and PostgreSQL: due rows only, each to one
worker, expired leases back in line with a new attempt number."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, select, update

from mcep.dispatch import repository
from mcep.dispatch.models import Event, Message, MessageAttempt, MessageState
from mcep.runtime import Runtime
from tests.conftest import Actor
from tests.integration.campaigns import builders

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)


async def due_campaign(
    runtime: Runtime, owner: Actor, recipients: int, *, at: datetime = T0
) -> uuid.UUID:
    campaign_id = await builders.running_campaign(runtime, owner, recipients=recipients)
    async with runtime.sessions() as session, session.begin():
        await session.execute(
            update(Message).where(Message.campaign_id == campaign_id).values(next_attempt_at=at)
        )
    return campaign_id


async def claim(
    runtime: Runtime, owner: str, *, now: datetime = T0, limit: int = 100
) -> list[repository.ClaimedMessage]:
    async with runtime.sessions() as session, session.begin():
        return await repository.claim_due(session, owner=owner, now=now, lease=LEASE, limit=limit)


async def rows(runtime: Runtime, model: Any, *where: Any) -> list[Any]:
    async with runtime.sessions() as session:
        return list((await session.scalars(select(model).where(*where))).all())


async def test_claims_due_messages_of_dispatching_campaigns_only(
    runtime: Runtime, actors: dict[str, Actor]
) -> None:
    pm = actors["pm"]
    due = await due_campaign(runtime, pm, 5)
    later = await due_campaign(runtime, pm, 2, at=T0 + timedelta(hours=1))
    paused = await due_campaign(runtime, pm, 2)
    await builders.change(runtime, pm, paused, "pause")
    cancelled = await due_campaign(runtime, pm, 2)
    await builders.change(runtime, pm, cancelled, "cancel")

    first = await claim(runtime, "w1", limit=3)
    second = await claim(runtime, "w2", limit=10)
    assert await claim(runtime, "w3") == []
    assert len(first) == 3 and len(second) == 2
    assert {m.campaign_id for m in first + second} == {due}
    assert {m.attempt for m in first + second} == {1}
    assert first[0].key == f"{first[0].id}:1" and first[0].content_enc is not None

    leased = await rows(runtime, Message, Message.campaign_id == due)
    assert {m.state for m in leased} == {MessageState.SENDING}
    assert {m.lease_owner for m in leased} == {"w1", "w2"}
    assert {m.lease_expires_at for m in leased} == {T0 + LEASE}
    attempts = await rows(runtime, MessageAttempt)
    assert sorted((a.message_id, a.attempt) for a in attempts) == sorted(
        (m.id, 1) for m in first + second
    )
    # The later ones come due, the paused ones wait for resume.
    assert {m.campaign_id for m in await claim(runtime, "w1", now=T0 + timedelta(hours=2))} == {
        later
    }
    await builders.change(runtime, pm, paused, "resume")
    assert {m.campaign_id for m in await claim(runtime, "w1")} == {paused}


async def test_an_expired_lease_puts_the_message_back_in_line(
    runtime: Runtime, actors: dict[str, Actor]
) -> None:
    campaign_id = await due_campaign(runtime, actors["pm"], 3)
    claimed = await claim(runtime, "dead-worker")
    async with runtime.sessions() as session, session.begin():
        assert await repository.release_expired(session, now=T0 + LEASE - timedelta(seconds=1)) == 0
    async with runtime.sessions() as session, session.begin():
        assert await repository.release_expired(session, now=T0 + LEASE + timedelta(seconds=1)) == 3

    back = await rows(runtime, Message, Message.campaign_id == campaign_id)
    assert {(m.state, m.lease_owner, m.attempts) for m in back} == {(MessageState.QUEUED, None, 1)}
    attempts = await rows(runtime, MessageAttempt)
    assert {(a.outcome, a.finished_at) for a in attempts} == {
        ("lease_expired", T0 + LEASE + timedelta(seconds=1))
    }
    expired_events = await rows(runtime, Event, Event.kind == "lease_expired")
    assert sorted(e.message_id for e in expired_events) == sorted(m.id for m in claimed)

    again = await claim(runtime, "w2", now=T0 + timedelta(minutes=1))
    assert sorted(m.id for m in again) == sorted(m.id for m in claimed)
    assert {m.attempt for m in again} == {2}  # a new attempt id: the provider sees a new key
    assert {m.key for m in again}.isdisjoint({m.key for m in claimed})


async def test_a_claim_is_two_statements_whatever_the_batch(
    runtime: Runtime, actors: dict[str, Actor]
) -> None:
    await due_campaign(runtime, actors["pm"], 60)
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement.split()[0].upper())

    event.listen(runtime.engine.sync_engine, "before_cursor_execute", record)
    try:
        assert len(await claim(runtime, "w1", limit=50)) == 50
    finally:
        event.remove(runtime.engine.sync_engine, "before_cursor_execute", record)
    assert [s for s in statements if s in ("UPDATE", "INSERT", "SELECT")] == ["UPDATE", "INSERT"]


async def test_concurrent_workers_never_share_a_message(
    runtime: Runtime, actors: dict[str, Actor]
) -> None:
    campaign_id = await due_campaign(runtime, actors["pm"], 200)

    async def worker(name: str) -> list[uuid.UUID]:
        mine: list[uuid.UUID] = []
        while batch := await claim(runtime, name, limit=25):
            mine.extend(m.id for m in batch)
            await asyncio.sleep(0)
        return mine

    results = await asyncio.gather(*(worker(f"w{n}") for n in range(4)))
    everything = [mid for result in results for mid in result]
    assert len(everything) == len(set(everything)) == 200
    assert set(everything) == {
        m.id for m in await rows(runtime, Message, Message.campaign_id == campaign_id)
    }


async def test_skip_locked_lets_a_second_worker_past_an_open_claim(
    runtime: Runtime, actors: dict[str, Actor], database_url: str
) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite serialises writers; the embedded default runs one dispatcher")
    await due_campaign(runtime, actors["pm"], 10)
    async with runtime.sessions() as holder, holder.begin():
        held = await repository.claim_due(holder, owner="slow", now=T0, lease=LEASE, limit=4)
        # The first claim is still uncommitted: its rows are locked, the rest are not.
        other = await asyncio.wait_for(claim(runtime, "fast", limit=10), timeout=5)
    assert len(held) == 4 and len(other) == 6
    assert {m.id for m in held}.isdisjoint({m.id for m in other})
