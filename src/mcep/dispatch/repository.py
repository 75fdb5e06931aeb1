"""Queries over the outbox: listing (scoped to the caller), the launch's bulk reads and
writes, and the worker's claim and lease handling. Every write is one statement per batch.

Claiming works on both backends with one statement: an ``UPDATE ... WHERE id IN (SELECT ...
FOR UPDATE OF messages SKIP LOCKED) RETURNING ...``. On PostgreSQL concurrent workers skip
each other's locked rows and never wait; SQLite ignores the locking clause and serialises
writers itself (the embedded default runs one dispatcher).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, bindparam, case, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mcep.auth.principal import Principal, scope_to_owner
from mcep.campaigns.models import Campaign, CampaignStatus
from mcep.contacts.models import Channel
from mcep.db.bulk import bulk_insert
from mcep.dispatch.caps import COUNTED_STATES, CapWindows
from mcep.dispatch.events import event_rows
from mcep.dispatch.models import (
    Event,
    EventKind,
    Message,
    MessageAttempt,
    MessageKind,
    MessageState,
)
from mcep.dispatch.states import WAITING
from mcep.errors import NotFound

CHUNK = 5000
_EVENT_COLUMNS = tuple(c.name for c in Event.__table__.columns if c.name != "id")
DISPATCHING = (CampaignStatus.SCHEDULED, CampaignStatus.RUNNING)
_KEYS = (
    Message.id,
    Message.campaign_id,
    Message.pm_id,
    Message.prospect_id,
    Message.variant,
    Message.channel,
    Message.device_id,
)


def _chunks(ids: Sequence[uuid.UUID]) -> list[Sequence[uuid.UUID]]:
    return [ids[i : i + CHUNK] for i in range(0, len(ids), CHUNK)]


# --- reads for the API ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MessageFilter:
    campaign_id: uuid.UUID | None = None
    state: MessageState | None = None
    prospect_id: uuid.UUID | None = None
    channel: Channel | None = None


async def list_messages(
    session: AsyncSession, principal: Principal, f: MessageFilter, *, limit: int, offset: int
) -> tuple[list[Message], int]:
    """One page of the caller's messages, newest first, with the total."""
    stmt = scope_to_owner(select(Message), Message.pm_id, principal)
    for column, value in (
        (Message.campaign_id, f.campaign_id),
        (Message.state, f.state),
        (Message.prospect_id, f.prospect_id),
        (Message.channel, f.channel),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    total = await session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = await session.scalars(
        stmt.order_by(Message.created_at.desc(), Message.id).limit(limit).offset(offset)
    )
    return list(rows.all()), total


async def get_message(
    session: AsyncSession, principal: Principal, message_id: uuid.UUID, *, for_update: bool = False
) -> Message:
    stmt = scope_to_owner(select(Message), Message.pm_id, principal).where(Message.id == message_id)
    message = await session.scalar(stmt.with_for_update() if for_update else stmt)
    if message is None:
        raise NotFound("no such message")
    return message


async def attempts_of(session: AsyncSession, message_id: uuid.UUID) -> list[MessageAttempt]:
    stmt = (
        select(MessageAttempt)
        .where(MessageAttempt.message_id == message_id)
        .order_by(MessageAttempt.attempt)
    )
    return list((await session.scalars(stmt)).all())


async def events_of(session: AsyncSession, message_id: uuid.UUID) -> list[Event]:
    stmt = select(Event).where(Event.message_id == message_id).order_by(Event.id)
    return list((await session.scalars(stmt)).all())


# --- the launch's reads and writes ---------------------------------------------------------


async def recent_counts(
    session: AsyncSession, prospect_ids: Sequence[uuid.UUID], *, windows: CapWindows
) -> dict[uuid.UUID, tuple[int, int]]:
    """Per prospect, messages touching them in the last 24 h and 7 days (see ``caps``)."""
    touch = func.coalesce(Message.sent_at, Message.next_attempt_at)
    day = func.sum(case((touch >= windows.day_since, 1), else_=0))
    counts: dict[uuid.UUID, tuple[int, int]] = {}
    for chunk in _chunks(prospect_ids):
        stmt = (
            select(Message.prospect_id, day, func.count())
            .where(
                Message.prospect_id.in_(chunk),
                Message.state.in_(COUNTED_STATES),
                touch >= windows.week_since,
            )
            .group_by(Message.prospect_id)
        )
        for pid, last_day, last_week in await session.execute(stmt):
            counts[pid] = (int(last_day or 0), int(last_week))
    return counts


async def insert_messages(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """All rows in one statement: COPY on PostgreSQL, one executemany elsewhere.

    Every row must carry every column (the launch builds them complete).
    """
    await bulk_insert(session, Message.__table__, rows)  # type: ignore[arg-type]


async def insert_events(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Append events in one statement; rows may leave out ``id`` and optional columns."""
    if not rows:
        return
    complete = [{column: row.get(column) for column in _EVENT_COLUMNS} for row in rows]
    await bulk_insert(session, Event.__table__, complete)  # type: ignore[arg-type]


async def cancel_waiting(
    session: AsyncSession,
    *,
    now: datetime,
    campaign_id: uuid.UUID | None = None,
    prospect_id: uuid.UUID | None = None,
    reason: str,
) -> int:
    """Cancel a campaign's or a prospect's messages that are not yet in flight, with an event
    each (two statements). Returns how many were cancelled."""
    if campaign_id is None and prospect_id is None:
        raise ValueError("cancel by campaign or by prospect")
    stmt = update(Message).where(Message.state.in_(WAITING))
    if campaign_id is not None:
        stmt = stmt.where(Message.campaign_id == campaign_id)
    if prospect_id is not None:
        stmt = stmt.where(Message.prospect_id == prospect_id)
    stmt = stmt.values(state=MessageState.CANCELLED, last_error=reason, updated_at=now)
    cancelled = (await session.execute(stmt.returning(*_KEYS))).all()
    details = {"reason": reason}
    await insert_events(
        session, event_rows(EventKind.CANCELLED, cancelled, at=now, details=details)
    )
    return len(cancelled)


# --- the worker's claim and lease ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClaimedMessage:
    """A message leased to one worker for one attempt; ``key`` is the attempt's idempotency
    key for the provider."""

    id: uuid.UUID
    campaign_id: uuid.UUID | None
    pm_id: uuid.UUID
    prospect_id: uuid.UUID
    variant: str
    channel: Channel
    device_id: uuid.UUID | None
    attempt: int
    failures: int
    content_enc: bytes | None
    lease_expires_at: datetime
    kind: MessageKind = MessageKind.CAMPAIGN

    @property
    def key(self) -> str:
        return f"{self.id}:{self.attempt}"


def _waiting() -> ColumnElement[bool]:
    """``state IN ('queued', 'retry_scheduled')`` with the values written into the SQL, so
    PostgreSQL can prove it matches the partial index ``ix_messages_waiting``."""
    values = sorted(WAITING)
    return Message.state.in_(bindparam("waiting", values, expanding=True, literal_execute=True))


def _due(now: datetime, limit: int) -> Select[uuid.UUID]:
    """Ids of due messages of dispatching campaigns (and due notices, which have no campaign),
    oldest first, skipping locked rows. It walks ``ix_messages_waiting`` in order and stops
    after ``limit`` rows, however many are waiting."""
    dispatching = select(Campaign.id).where(Campaign.status.in_(DISPATCHING))
    return (
        select(Message.id)
        .where(
            _waiting(),
            Message.next_attempt_at <= now,
            or_(Message.campaign_id.is_(None), Message.campaign_id.in_(dispatching)),
        )
        .order_by(Message.next_attempt_at, Message.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


async def _open_attempts(
    session: AsyncSession, claimed: Sequence[ClaimedMessage], *, owner: str, now: datetime
) -> None:
    """One history row per claimed attempt (one statement); its outcome is filled in later."""
    rows = [
        {
            "id": uuid.uuid4(),
            "message_id": m.id,
            "attempt": m.attempt,
            "device_id": m.device_id,
            "lease_owner": owner,
            "started_at": now,
        }
        for m in claimed
    ]
    if rows:
        connection = await session.connection()  # Core: no ORM bookkeeping on the hot path
        await connection.execute(insert(MessageAttempt), rows)


async def claim_due(
    session: AsyncSession, *, owner: str, now: datetime, lease: timedelta, limit: int
) -> list[ClaimedMessage]:
    """Lease up to ``limit`` due messages of dispatching campaigns to ``owner``.

    Two statements: the claiming UPDATE (which also numbers the attempt) and one INSERT of
    the attempts' history rows. Commit promptly: the lease starts now. Whoever records the
    outcome must guard its UPDATE on ``lease_owner`` and ``attempts``, so that a worker whose
    lease expired can't overwrite the attempt that replaced it.
    """
    expires = now + lease
    due = _due(now, limit).subquery("due")
    stmt = (
        update(Message)
        .where(Message.id == due.c.id, Message.state.in_(WAITING))
        .values(
            state=MessageState.SENDING,
            lease_owner=owner,
            lease_expires_at=expires,
            attempts=Message.attempts + 1,
            updated_at=now,
        )
        .returning(*_KEYS, Message.attempts, Message.failures, Message.content_enc, Message.kind)
    )
    connection = await session.connection()
    claimed = sorted(
        (
            ClaimedMessage(
                *row[:7],
                attempt=row[7],
                failures=row[8],
                content_enc=row[9],
                lease_expires_at=expires,
                kind=row[10],
            )
            for row in await connection.execute(stmt)
        ),
        key=lambda m: m.id,
    )
    await _open_attempts(session, claimed, owner=owner, now=now)
    return claimed


async def release_expired(session: AsyncSession, *, now: datetime, limit: int = 1000) -> int:
    """Put messages whose lease ran out (their worker died) back in line, due at once.

    Their open attempt is closed as ``lease_expired`` and an event is logged. Rows are taken
    with SKIP LOCKED, so concurrent sweepers never wait on or deadlock with each other.
    """
    expired = (
        select(Message.id)
        .where(Message.state == MessageState.SENDING, Message.lease_expires_at < now)
        .order_by(Message.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    stmt = (
        update(Message)
        .where(Message.id.in_(expired), Message.state == MessageState.SENDING)
        .values(state=MessageState.QUEUED, lease_owner=None, lease_expires_at=None, updated_at=now)
        .returning(*_KEYS)
    )
    released = (await session.execute(stmt)).all()
    if not released:
        return 0
    ids = [r.id for r in released]
    await session.execute(
        update(MessageAttempt)
        .where(MessageAttempt.message_id.in_(ids), MessageAttempt.outcome.is_(None))
        .values(outcome="lease_expired", finished_at=now)
    )
    await insert_events(session, event_rows(EventKind.LEASE_EXPIRED, released, at=now))
    return len(released)
