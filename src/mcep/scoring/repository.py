"""Queries of the scoring domain. Hot-path writes are one statement per batch, in a fixed
(sorted) key order so that concurrent writers can't deadlock."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Select, Table, and_, bindparam, case, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from mcep.auth.principal import Principal, scope_to_owner
from mcep.campaigns.models import EngagementProfile
from mcep.contacts.models import Prospect
from mcep.db.bulk import bulk_insert
from mcep.dispatch.models import Event
from mcep.errors import NotFound
from mcep.inbound.models import InboundMessage
from mcep.scoring.models import (
    FeedbackLabel,
    LeadFeedback,
    LeadScore,
    LeadState,
    ModelVersion,
    ScoringCursor,
)

DEFAULT_THRESHOLD = 70
"""A PM without any engagement profile qualifies leads at 70."""

_PROSPECTS = cast(Table, Prospect.__table__)
_STATES = cast(Table, LeadState.__table__)


async def _core(session: AsyncSession) -> AsyncConnection:
    """The session's connection, for hot-path statements that need no ORM row handling."""
    return await session.connection()


def is_postgres(session: AsyncSession) -> bool:
    return session.bind is not None and session.bind.dialect.name == "postgresql"


# --- the cursor ----------------------------------------------------------------------------


async def lock_cursor(session: AsyncSession, name: str, *, now: datetime) -> int | None:
    """The cursor's position, locked for this transaction; ``None`` when another worker holds
    it (PostgreSQL, ``SKIP LOCKED``). The row is created at 0 on first use."""
    stmt = select(ScoringCursor.last_event_id).where(ScoringCursor.name == name)
    if is_postgres(session):
        stmt = stmt.with_for_update(skip_locked=True)
    position: int | None = await session.scalar(stmt)
    if position is not None:
        return position
    exists = select(ScoringCursor.name).where(ScoringCursor.name == name)
    if await session.scalar(exists) is not None:
        return None  # there, but locked by another worker
    dialect = postgresql if is_postgres(session) else sqlite
    await session.execute(
        dialect.insert(ScoringCursor)
        .values(name=name, last_event_id=0, updated_at=now)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    return await session.scalar(stmt)


async def advance_cursor(
    session: AsyncSession, name: str, *, expected: int, to: int, now: datetime
) -> bool:
    """Move the cursor from ``expected`` to ``to``; ``False`` if someone else moved it first
    (the caller then rolls back, so nothing is applied twice)."""
    result = await session.execute(
        update(ScoringCursor)
        .where(ScoringCursor.name == name, ScoringCursor.last_event_id == expected)
        .values(last_event_id=to, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


async def cursor_position(session: AsyncSession, name: str) -> int:
    return (
        await session.scalar(select(ScoringCursor.last_event_id).where(ScoringCursor.name == name))
        or 0
    )


# --- reading a batch -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventRow:
    id: int
    at: datetime
    kind: str
    campaign_id: uuid.UUID | None
    variant: str | None
    channel: str | None
    prospect_id: uuid.UUID | None
    pm_id: uuid.UUID | None
    message_id: uuid.UUID | None
    details: Mapping[str, Any]


async def events_after(session: AsyncSession, after: int, *, limit: int) -> list[EventRow]:
    """The next ``limit`` events past ``after``, in id order."""
    rows = await (await _core(session)).execute(
        select(
            Event.id,
            Event.at,
            Event.kind,
            Event.campaign_id,
            Event.variant,
            Event.channel,
            Event.prospect_id,
            Event.pm_id,
            Event.message_id,
            Event.details,
        )
        .where(Event.id > after)
        .order_by(Event.id)
        .limit(limit)
    )
    return [
        EventRow(
            id=r.id,
            at=r.at,
            kind=r.kind,
            campaign_id=r.campaign_id,
            variant=r.variant,
            channel=None if r.channel is None else str(r.channel),
            prospect_id=r.prospect_id,
            pm_id=r.pm_id,
            message_id=r.message_id,
            details=r.details or {},
        )
        for r in rows
    ]


@dataclass(frozen=True, slots=True)
class ProspectRow:
    id: uuid.UUID
    pm_id: uuid.UUID
    timezone: str
    attributes: Mapping[str, Any]
    opted_out: bool
    erased: bool
    wrapped_key: bytes | None


async def prospects(
    session: AsyncSession, ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, ProspectRow]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = await (await _core(session)).execute(
        select(
            Prospect.id,
            Prospect.pm_id,
            Prospect.timezone,
            Prospect.attributes,
            Prospect.opted_out,
            Prospect.erased_at,
            Prospect.wrapped_key,
        ).where(Prospect.id.in_(wanted))
    )
    return {
        r.id: ProspectRow(
            r.id, r.pm_id, r.timezone, r.attributes or {}, r.opted_out, r.erased_at is not None,
            r.wrapped_key,
        )
        for r in rows
    }  # fmt: skip


@dataclass(frozen=True, slots=True)
class StateRow:
    prospect_id: uuid.UUID
    state: Mapping[str, Any]
    score: float | None
    model_version_id: int | None
    events_seen: int
    last_event_id: int
    qualified_at: datetime | None


async def lead_states(session: AsyncSession, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, StateRow]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = await (await _core(session)).execute(
        select(
            LeadState.prospect_id,
            LeadState.state,
            LeadState.score,
            LeadState.model_version_id,
            LeadState.events_seen,
            LeadState.last_event_id,
            LeadState.qualified_at,
        ).where(LeadState.prospect_id.in_(wanted))
    )
    return {r.prospect_id: StateRow(*r) for r in rows}


async def inbound_texts(
    session: AsyncSession, provider_ids: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], tuple[uuid.UUID, uuid.UUID | None, bytes | None]]:
    """Inbound messages by ``(channel, provider event id)``: row id, prospect, sealed text."""
    wanted = set(provider_ids)
    if not wanted:
        return {}
    rows = await (await _core(session)).execute(
        select(
            InboundMessage.id,
            InboundMessage.channel,
            InboundMessage.event_id,
            InboundMessage.prospect_id,
            InboundMessage.text_enc,
        ).where(InboundMessage.event_id.in_(sorted({e for _, e in wanted})))
    )
    found = {}
    for row_id, channel, event_id, prospect_id, text_enc in rows:
        key = (str(channel), event_id)
        if key in wanted:
            found[key] = (row_id, prospect_id, text_enc)
    return found


async def thresholds(session: AsyncSession, pm_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, int]:
    """Each PM's lead threshold: that of its most recently updated engagement profile (the
    one it last set), or :data:`DEFAULT_THRESHOLD` when it has none."""
    wanted = sorted(set(pm_ids))
    found: dict[uuid.UUID, int] = dict.fromkeys(wanted, DEFAULT_THRESHOLD)
    if not wanted:
        return found
    rows = await (await _core(session)).execute(
        select(EngagementProfile.pm_id, EngagementProfile.lead_threshold)
        .where(EngagementProfile.pm_id.in_(wanted))
        .order_by(
            EngagementProfile.pm_id,
            EngagementProfile.updated_at.desc(),
            EngagementProfile.created_at.desc(),
            EngagementProfile.id,
        )
    )
    seen: set[uuid.UUID] = set()
    for pm_id, threshold in rows:
        if pm_id not in seen:
            seen.add(pm_id)
            found[pm_id] = threshold
    return found


# --- writing a batch -----------------------------------------------------------------------


async def save_states(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Insert or update lead states (full rows but ``qualified_*``), sorted by prospect."""
    if not rows:
        return
    dialect = postgresql if is_postgres(session) else sqlite
    stmt = dialect.insert(_STATES)
    owned = ("state", "features", "score", "model_version_id", "scored_at", "events_seen",
             "last_event_id", "updated_at")  # fmt: skip
    stmt = stmt.on_conflict_do_update(
        index_elements=["prospect_id"], set_={c: stmt.excluded[c] for c in owned}
    )
    await (await _core(session)).execute(stmt, sorted(rows, key=lambda r: r["prospect_id"]))


async def set_prospect_scores(
    session: AsyncSession, scores: Mapping[uuid.UUID, float | None]
) -> None:
    """``prospects.score`` for many prospects in one statement (their ``updated_at`` is left
    alone: a new score is not an edit of the prospect)."""
    if not scores:
        return
    params = [{"pid": pid, "s": scores[pid]} for pid in sorted(scores)]
    await (await _core(session)).execute(
        update(_PROSPECTS)
        .where(_PROSPECTS.c.id == bindparam("pid"))
        .values(score=bindparam("s"), updated_at=_PROSPECTS.c.updated_at),
        params,
    )


async def add_history(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    await bulk_insert(session, LeadScore.__table__, rows)  # type: ignore[arg-type]


async def mark_qualified(
    session: AsyncSession, scores: Mapping[uuid.UUID, float], *, now: datetime
) -> list[uuid.UUID]:
    """Set ``qualified_at`` on those not yet qualified, in one statement; returns the ones that
    changed. The condition is in the statement, so no prospect can qualify twice."""
    if not scores:
        return []
    result = await session.execute(
        update(_STATES)
        .where(_STATES.c.prospect_id.in_(sorted(scores)), _STATES.c.qualified_at.is_(None))
        .values(
            qualified_at=now,
            qualified_score=case(dict(scores), value=_STATES.c.prospect_id),
        )
        .returning(_STATES.c.prospect_id)
    )
    return sorted(result.scalars())


async def stale_states(
    session: AsyncSession, *, scope_versions: Mapping[uuid.UUID | None, int], limit: int
) -> list[uuid.UUID]:
    """Prospects whose score doesn't come from their champion now: ``scope_versions`` maps a
    PM (or ``None``, every other PM) to the champion version id that should have scored it."""
    conditions = []
    pm_scoped = [pm for pm in scope_versions if pm is not None]
    for pm, version_id in scope_versions.items():
        owner = LeadState.pm_id == pm if pm is not None else LeadState.pm_id.not_in(pm_scoped)
        differs = (LeadState.model_version_id.is_(None)) | (
            LeadState.model_version_id != version_id
        )
        conditions.append(and_(owner, differs))
    if not conditions:
        return []
    # Erased prospects are never scored again, so they must not stay "stale" forever.
    rows = await session.scalars(
        select(LeadState.prospect_id)
        .join(Prospect, Prospect.id == LeadState.prospect_id)
        .where(or_(*conditions), Prospect.erased_at.is_(None))
        .order_by(LeadState.prospect_id)
        .limit(limit)
    )
    return list(rows)


# --- the API's reads -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LeadFilter:
    score_min: float | None = None
    score_max: float | None = None
    qualified: bool | None = None
    pm_id: uuid.UUID | None = None


def _lead_query(principal: Principal, f: LeadFilter) -> Select[Any]:
    joined = cast(
        "Select[Any]",
        select(LeadState, Prospect.name_enc, Prospect.wrapped_key).join(
            Prospect, Prospect.id == LeadState.prospect_id
        ),
    )
    stmt = scope_to_owner(joined, LeadState.pm_id, principal)
    stmt = stmt.where(LeadState.score.is_not(None), Prospect.erased_at.is_(None))
    if f.score_min is not None:
        stmt = stmt.where(LeadState.score >= f.score_min)
    if f.score_max is not None:
        stmt = stmt.where(LeadState.score <= f.score_max)
    if f.qualified is not None:
        column = LeadState.qualified_at
        stmt = stmt.where(column.is_not(None) if f.qualified else column.is_(None))
    if f.pm_id is not None:
        stmt = stmt.where(LeadState.pm_id == f.pm_id)
    return stmt


@dataclass(frozen=True, slots=True)
class LeadRow:
    state: LeadState
    name_enc: bytes | None
    wrapped_key: bytes | None


async def list_leads(
    session: AsyncSession, principal: Principal, f: LeadFilter, *, limit: int, offset: int
) -> tuple[list[LeadRow], int]:
    """Scored prospects the caller may see, best first."""
    base = _lead_query(principal, f)
    total = await session.scalar(select(func.count()).select_from(base.subquery())) or 0
    rows = await session.execute(
        base.order_by(LeadState.score.desc(), LeadState.prospect_id).limit(limit).offset(offset)
    )
    return [LeadRow(*r) for r in rows], total


async def get_prospect(
    session: AsyncSession, principal: Principal, prospect_id: uuid.UUID, *, for_update: bool = False
) -> Prospect:
    """The prospect behind a lead, if the caller may see it; otherwise 404."""
    stmt = scope_to_owner(select(Prospect), Prospect.pm_id, principal).where(
        Prospect.id == prospect_id, Prospect.erased_at.is_(None)
    )
    if for_update:
        stmt = stmt.with_for_update()
    prospect = await session.scalar(stmt)
    if prospect is None:
        raise NotFound("no such prospect")
    return prospect


async def lead_state(session: AsyncSession, prospect_id: uuid.UUID) -> LeadState | None:
    return await session.get(LeadState, prospect_id)


async def score_history(
    session: AsyncSession, prospect_id: uuid.UUID, *, limit: int
) -> list[LeadScore]:
    """The latest ``limit`` scores, oldest first."""
    rows = await session.scalars(
        select(LeadScore)
        .where(LeadScore.prospect_id == prospect_id)
        .order_by(LeadScore.at.desc(), LeadScore.id.desc())
        .limit(limit)
    )
    return list(reversed(list(rows)))


async def scores_at_or_before(
    session: AsyncSession, prospect_ids: Sequence[uuid.UUID], *, cutoff: datetime
) -> dict[uuid.UUID, float]:
    """For each prospect, its last score at or before ``cutoff``, or else its first score."""
    if not prospect_ids:
        return {}
    ids = list(prospect_ids)
    before = await _first_ranked(
        session, ids, LeadScore.at <= cutoff, (LeadScore.at.desc(), LeadScore.id.desc())
    )
    rest = [pid for pid in ids if pid not in before]
    after = await _first_ranked(session, rest, None, (LeadScore.at, LeadScore.id)) if rest else {}
    return {**after, **before}


async def _first_ranked(
    session: AsyncSession, ids: list[uuid.UUID], where: Any, order: tuple[Any, ...]
) -> dict[uuid.UUID, float]:
    rank = func.row_number().over(partition_by=LeadScore.prospect_id, order_by=order)
    stmt = select(LeadScore.prospect_id, LeadScore.score, rank.label("rank")).where(
        LeadScore.prospect_id.in_(ids)
    )
    if where is not None:
        stmt = stmt.where(where)
    sub = stmt.subquery()
    rows = await session.execute(select(sub.c.prospect_id, sub.c.score).where(sub.c.rank == 1))
    return dict(rows.all())


async def feedback_for(session: AsyncSession, prospect_id: uuid.UUID) -> list[LeadFeedback]:
    rows = await session.scalars(
        select(LeadFeedback)
        .where(LeadFeedback.prospect_id == prospect_id)
        .order_by(LeadFeedback.at, LeadFeedback.id)
    )
    return list(rows)


async def latest_labels(session: AsyncSession) -> list[LeadFeedback]:
    """Each prospect's latest verdict (resets aside): the training labels."""
    rows = await session.scalars(
        select(LeadFeedback)
        .join(Prospect, Prospect.id == LeadFeedback.prospect_id)
        .where(LeadFeedback.label != "reset", Prospect.erased_at.is_(None))
        .order_by(LeadFeedback.prospect_id, LeadFeedback.at.desc(), LeadFeedback.id)
    )
    latest: dict[uuid.UUID, LeadFeedback] = {}
    for row in rows:
        latest.setdefault(row.prospect_id, row)
    return list(latest.values())


async def last_labels(
    session: AsyncSession, prospect_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, FeedbackLabel]:
    """Each prospect's latest feedback label (a reset included)."""
    if not prospect_ids:
        return {}
    rank = func.row_number().over(
        partition_by=LeadFeedback.prospect_id,
        order_by=(LeadFeedback.at.desc(), LeadFeedback.id.desc()),
    )
    sub = (
        select(LeadFeedback.prospect_id, LeadFeedback.label, rank.label("rank"))
        .where(LeadFeedback.prospect_id.in_(list(prospect_ids)))
        .subquery()
    )
    rows = await session.execute(select(sub.c.prospect_id, sub.c.label).where(sub.c.rank == 1))
    return {pid: FeedbackLabel(label) for pid, label in rows}


async def version_numbers(session: AsyncSession, ids: Iterable[int]) -> dict[int, int]:
    """Version numbers of model rows, by row id."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = await session.execute(
        select(ModelVersion.id, ModelVersion.version).where(ModelVersion.id.in_(wanted))
    )
    return dict(rows.all())
