"""Writing a batch's outcomes: a few set-based statements, in one transaction.

1. Lock the batch's messages still leased to this worker, in id order (the fixed order that
   keeps concurrent writers from deadlocking), and read their state.
2. One ``UPDATE messages ... FROM <rows>`` for every outcome, guarded on ``lease_owner`` and
   ``attempts``: a worker whose lease expired (and whose message was claimed again, with a
   new attempt number) can never overwrite the newer attempt.
3. One ``UPDATE message_attempts ... FROM <rows>`` closing each attempt's history row.
4. One insert of the events, for the state changes that happened.

Devices the provider refused are reported to the fleet, prospects the provider reports as
opted out are opted out everywhere; both are audited. Flushes; never commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    String,
    Uuid,
    and_,
    any_,
    bindparam,
    case,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from mcep.audit import service as audit
from mcep.campaigns.models import Campaign, CampaignStatus
from mcep.channels.base import Platform
from mcep.contacts.models import Prospect
from mcep.db.base import UTCDateTime
from mcep.dispatch import repository
from mcep.dispatch.events import event_rows
from mcep.dispatch.models import EventKind, Message, MessageAttempt, MessageState
from mcep.dispatch.outcomes import Decision
from mcep.dispatch.rowset import rowset
from mcep.dispatch.states import WAITING
from mcep.fleet import repository as fleet_repository
from mcep.fleet.allocator import DeviceAllocator
from mcep.fleet.models import Device, DeviceStatus

IN_FLIGHT = frozenset({*WAITING, MessageState.SENDING})
ROWS_PER_STATEMENT = 1000
_KEYS = (
    Message.id,
    Message.campaign_id,
    Message.pm_id,
    Message.prospect_id,
    Message.variant,
    Message.channel,
    Message.device_id,
)
_MESSAGE_ROWS = (
    ("id", Uuid()),
    ("attempt", Integer()),
    ("owner", String(100)),
    ("state", String(20)),
    ("failures", Integer()),
    ("next_at", UTCDateTime()),
    ("device_id", Uuid()),
    ("provider_id", String(200)),
    ("error", String(500)),
)
_ATTEMPT_ROWS = (
    ("id", Uuid()),
    ("attempt", Integer()),
    ("outcome", String(32)),
    ("code", String(64)),
    ("reason", String(500)),
    ("retry_after", Float()),
    ("provider_id", String(200)),
)
# What the fleet may be told, and from which states: a report never lifts a device up.
_DEVICE_DOWNGRADES: Mapping[DeviceStatus, frozenset[DeviceStatus]] = {
    DeviceStatus.QUARANTINED: frozenset({DeviceStatus.ACTIVE, DeviceStatus.DEGRADED}),
    DeviceStatus.DEGRADED: frozenset({DeviceStatus.ACTIVE}),
}


async def _dialect(session: AsyncSession) -> str:
    return (await session.connection()).dialect.name


def _id_in(column: Any, ids: Sequence[uuid.UUID], dialect: str) -> ColumnElement[bool]:
    """``column IN ids``; one array parameter on PostgreSQL, so the text never varies."""
    if dialect == "postgresql":
        return column == any_(bindparam("ids", list(ids), type_=ARRAY(Uuid())))  # type: ignore[no-any-return]
    return column.in_(list(ids))  # type: ignore[no-any-return]


# --- the batch's messages ------------------------------------------------------------------


async def lock_owned(
    session: AsyncSession, ids: Sequence[uuid.UUID], *, owner: str
) -> dict[uuid.UUID, tuple[MessageState, int]]:
    """State and attempt number of the messages still leased to ``owner``, locked in id order."""
    dialect = await _dialect(session)
    stmt = (
        select(Message.id, Message.state, Message.attempts)
        .where(_id_in(Message.id, sorted(ids), dialect), Message.lease_owner == owner)
        .order_by(Message.id)
        .with_for_update()
    )
    rows = await (await session.connection()).execute(stmt)
    return {row.id: (row.state, row.attempts) for row in rows}


async def apply_decisions(
    session: AsyncSession, decisions: Sequence[Decision], *, owner: str, now: datetime
) -> list[Any]:
    """Every decision in one guarded UPDATE (per 1,000); returns the rows it changed."""
    changed: list[Any] = []
    for chunk in _chunks(sorted(decisions, key=lambda d: d.message_id)):
        changed.extend(await _apply(session, chunk, owner=owner, now=now))
    return changed


def _chunks(decisions: Sequence[Decision]) -> list[Sequence[Decision]]:
    """Slices small enough for SQLite's limit on parameters per statement."""
    return [
        decisions[i : i + ROWS_PER_STATEMENT] for i in range(0, len(decisions), ROWS_PER_STATEMENT)
    ]


async def _apply(
    session: AsyncSession, ordered: Sequence[Decision], *, owner: str, now: datetime
) -> list[Any]:
    dialect = await _dialect(session)
    v = rowset(
        dialect,
        "outcome",
        _MESSAGE_ROWS,
        [
            (
                d.message_id,
                d.attempt,
                owner,
                d.state.value,
                d.failures,
                d.next_attempt_at,
                d.device_id,
                d.provider_message_id,
                d.reason,
            )
            for d in ordered
        ],
    )
    sending = Message.state == MessageState.SENDING
    stmt = (
        update(Message)
        # The owner is matched per row, as a join clause: a filter on it would look so
        # selective to PostgreSQL's planner that it would scan instead of using the key.
        .where(
            Message.id == v.c.id,
            Message.attempts == v.c.attempt,
            Message.lease_owner == v.c.owner,
        )
        .values(
            # A status webhook may have moved an accepted message on before this commit.
            state=case((sending, v.c.state), else_=Message.state),
            failures=v.c.failures,
            next_attempt_at=func.coalesce(v.c.next_at, Message.next_attempt_at),
            device_id=func.coalesce(v.c.device_id, Message.device_id),
            provider_message_id=func.coalesce(v.c.provider_id, Message.provider_message_id),
            last_error=case((sending, v.c.error), else_=Message.last_error),
            sent_at=case((v.c.provider_id.is_not(None), now), else_=Message.sent_at),
            lease_owner=None,
            lease_expires_at=None,
            updated_at=now,
        )
        .returning(*_KEYS)
    )
    return list((await (await session.connection()).execute(stmt)).all())


async def close_attempts(
    session: AsyncSession, decisions: Sequence[Decision], *, now: datetime
) -> None:
    """Fill in each attempt's history row; also one a sweeper closed as ``lease_expired``
    while the provider was in fact answering, so the history says what really happened."""
    dialect = await _dialect(session)
    for chunk in _chunks(sorted(decisions, key=lambda d: d.message_id)):
        await _close(session, chunk, dialect=dialect, now=now)


async def _close(
    session: AsyncSession, decisions: Sequence[Decision], *, dialect: str, now: datetime
) -> None:
    v = rowset(
        dialect,
        "closed",
        _ATTEMPT_ROWS,
        [
            (
                d.message_id,
                d.attempt,
                d.outcome,
                d.code,
                d.reason,
                d.retry_after,
                d.provider_message_id,
            )
            for d in decisions
        ],
    )
    connection = await session.connection()
    await connection.execute(
        update(MessageAttempt)
        .where(
            MessageAttempt.message_id == v.c.id,
            MessageAttempt.attempt == v.c.attempt,
            or_(MessageAttempt.outcome.is_(None), MessageAttempt.outcome == "lease_expired"),
        )
        .values(
            finished_at=now,
            outcome=v.c.outcome,
            code=v.c.code,
            reason=v.c.reason,
            retry_after=v.c.retry_after,
            provider_message_id=v.c.provider_id,
        )
    )


def outcome_events(
    changed: Iterable[Any],
    decisions: Mapping[uuid.UUID, Decision],
    before: Mapping[uuid.UUID, tuple[MessageState, int]],
    *,
    now: datetime,
) -> list[dict[str, Any]]:
    """An event per state change this batch made (a message a webhook had already moved on
    got its events from the webhook)."""
    rows = []
    for message in changed:
        decision = decisions[message.id]
        if decision.event is None or before[message.id][0] is not MessageState.SENDING:
            continue
        details: dict[str, Any] = {"attempt": decision.attempt}
        if decision.reason:
            details["reason"] = decision.reason
        if decision.code:
            details["code"] = decision.code
        if decision.next_attempt_at and decision.event is EventKind.RETRY_SCHEDULED:
            details["retry_at"] = decision.next_attempt_at.isoformat()
        if decision.template:
            details["template"] = True
        rows.extend(event_rows(decision.event, [message], at=now, details=details))
    return rows


# --- devices -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceReport:
    device_id: uuid.UUID
    status: DeviceStatus
    reason: str
    code: str | None


async def report_devices(
    session: AsyncSession, reports: Sequence[DeviceReport], *, actor: str, now: datetime
) -> list[uuid.UUID]:
    """Mark refused devices (never raising one's status), each change audited; returns the
    devices whose status changed."""
    changed: list[uuid.UUID] = []
    worst: dict[uuid.UUID, DeviceReport] = {}
    for report in reports:
        held = worst.get(report.device_id)
        if held is None or report.status is DeviceStatus.QUARANTINED:
            worst[report.device_id] = report
    for device_id in sorted(worst):
        report = worst[device_id]
        row = (
            await session.execute(
                update(Device)
                .where(
                    Device.id == device_id,
                    Device.status.in_(_DEVICE_DOWNGRADES[report.status]),
                )
                .values(status=report.status, updated_at=now)
                .returning(Device.platform, Device.address)
            )
        ).first()
        if row is None:
            continue
        changed.append(device_id)
        await audit.append(
            session,
            actor=actor,
            action=f"device.{report.status.value}",
            object_type="device",
            object_id=str(device_id),
            details={
                "platform": row.platform.value,
                "address": row.address,
                "reason": report.reason,
                "code": report.code,
            },
        )
    return changed


async def allocator(session: AsyncSession, *, now: datetime) -> DeviceAllocator:
    """The fleet's active devices with today's load (read after this batch's reports)."""
    slots = await fleet_repository.device_slots(session, since=now - timedelta(days=1))
    return DeviceAllocator(slots)


def reallocate(
    allocator: DeviceAllocator, wanted: Iterable[tuple[uuid.UUID, str, uuid.UUID]]
) -> dict[uuid.UUID, uuid.UUID | None]:
    """A new device per (message, platform, prospect), or ``None`` when the platform has none."""
    return {
        message_id: allocator.allocate(Platform(platform), prospect_id=prospect_id)
        for message_id, platform, prospect_id in wanted
    }


# --- prospects -----------------------------------------------------------------------------


async def opt_out(
    session: AsyncSession,
    prospects: Mapping[uuid.UUID, str],
    *,
    actor: str,
    now: datetime,
) -> list[uuid.UUID]:
    """The global opt-out for prospects a provider reported (a block, a marketing stop): flag
    them, cancel what is queued for them, log and audit. ``prospects`` maps id to channel."""
    if not prospects:
        return []
    newly = (
        await session.execute(
            update(Prospect)
            .where(Prospect.id.in_(sorted(prospects)), Prospect.opted_out.is_(False))
            .values(opted_out=True, opted_out_at=now, updated_at=now)
            .returning(Prospect.id, Prospect.pm_id)
        )
    ).all()
    events = []
    for prospect_id, pm_id in sorted(newly):
        channel = prospects[prospect_id]
        cancelled = await repository.cancel_waiting(
            session, now=now, prospect_id=prospect_id, reason=f"opted out on {channel}"
        )
        events.append(
            {
                "at": now,
                "kind": EventKind.OPTED_OUT,
                "channel": channel,
                "prospect_id": prospect_id,
                "pm_id": pm_id,
                "details": {"cancelled": cancelled, "source": "provider"},
            }
        )
        await audit.append(
            session,
            actor=actor,
            action="prospect.opted_out",
            object_type="prospect",
            object_id=str(prospect_id),
            details={"channel": channel, "cancelled_messages": cancelled, "source": "provider"},
        )
    await repository.insert_events(session, events)
    return [pid for pid, _ in newly]


# --- campaigns -----------------------------------------------------------------------------


async def complete_campaigns(
    session: AsyncSession, campaign_ids: Iterable[uuid.UUID] | None, *, now: datetime
) -> list[uuid.UUID]:
    """Mark dispatching campaigns (these, or all when ``None``) completed once none of their
    messages is waiting or in flight; each completion audited. Rows another worker is
    completing at the same moment are skipped, not waited for."""
    pending = exists().where(Message.campaign_id == Campaign.id, Message.state.in_(IN_FLIGHT))
    candidates = select(Campaign.id).where(Campaign.status.in_(repository.DISPATCHING), ~pending)
    if campaign_ids is not None:
        ids = sorted(set(campaign_ids))
        if not ids:
            return []
        candidates = candidates.where(Campaign.id.in_(ids))
    locked = candidates.order_by(Campaign.id).with_for_update(skip_locked=True)
    done = (
        await session.execute(
            update(Campaign)
            .where(Campaign.id.in_(locked), and_(Campaign.status.in_(repository.DISPATCHING)))
            .values(status=CampaignStatus.COMPLETED, updated_at=now)
            .returning(Campaign.id, Campaign.pm_id)
        )
    ).all()
    for campaign_id, pm_id in sorted(done):
        await audit.append(
            session,
            actor="worker:dispatch",
            action="campaign.completed",
            object_type="campaign",
            object_id=str(campaign_id),
            details={"pm_id": str(pm_id)},
        )
    return [campaign_id for campaign_id, _ in done]
