"""Queries over experiments: the caller's experiments (through ``scope_to_owner``), the
assignment table, and the per-group counts taken from the event log in one statement."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Subquery, and_, case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mcep.auth.principal import Principal, scope_to_owner
from mcep.db.bulk import bulk_insert
from mcep.dispatch.models import Event, EventKind
from mcep.errors import NotFound
from mcep.experiments.design import Cohort, ExperimentStatus, Mode
from mcep.experiments.models import Experiment, ExperimentAssignment
from mcep.experiments.results import ExperimentCounts, GroupCounts

QUALIFIED = "qualified"  # written by lead scoring when a prospect crosses the PM's threshold
# Outcomes of a campaign's own message: counted only from events of that campaign.
_CAMPAIGN_KINDS = (EventKind.SENT.value, EventKind.READ.value, EventKind.REPLIED.value)
# Outcomes of a prospect, whichever message (if any) led to them.
_PROSPECT_KINDS = (EventKind.OPTED_OUT.value, QUALIFIED)
_OUTCOMES = ("replied", "read", "opted_out", "qualified")
CHUNK = 5000


async def get_owned(
    session: AsyncSession,
    principal: Principal,
    experiment_id: uuid.UUID,
    *,
    for_update: bool = False,
) -> Experiment:
    """The experiment if the caller may see it; otherwise 404, whether or not it exists."""
    stmt = scope_to_owner(select(Experiment), Experiment.pm_id, principal).where(
        Experiment.id == experiment_id
    )
    found = await session.scalar(stmt.with_for_update() if for_update else stmt)
    if found is None:
        raise NotFound("no such experiment")
    return found


async def list_owned(
    session: AsyncSession,
    principal: Principal,
    *,
    limit: int,
    offset: int,
    where: Sequence[Any] = (),
) -> tuple[list[Experiment], int]:
    """One page of the caller's experiments, newest first, with the total."""
    stmt = scope_to_owner(select(Experiment), Experiment.pm_id, principal).where(*where)
    total = await session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = await session.scalars(
        stmt.order_by(Experiment.created_at.desc(), Experiment.id).limit(limit).offset(offset)
    )
    return list(rows.all()), total


async def for_campaign(session: AsyncSession, campaign_id: uuid.UUID) -> Experiment | None:
    return await session.scalar(select(Experiment).where(Experiment.campaign_id == campaign_id))


async def insert_assignments(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Every assignment of a launch in one statement (COPY on PostgreSQL)."""
    await bulk_insert(session, ExperimentAssignment.__table__, rows)  # type: ignore[arg-type]


# --- counts --------------------------------------------------------------------------------


async def group_counts(
    session: AsyncSession, experiment: Experiment, *, now: datetime
) -> ExperimentCounts:
    """Per group (cohort and arm), prospects assigned, sent to, and reached by each outcome.

    One statement: per prospect, a flag per outcome from the events since launch (up to
    ``now``, so an injected clock sees only its past); then per group, the sums. Treated
    prospects' outcomes count only once their message was sent, so successes never exceed
    trials; the hold-out's count over all its members.
    """
    if experiment.launched_at is None:
        return ExperimentCounts()
    p = _per_prospect(experiment, experiment.launched_at, now).c
    gate = case((p.cohort == Cohort.HOLDOUT, 1), else_=p.sent)
    stmt = select(
        p.cohort,
        p.arm,
        func.count(),
        func.sum(p.sent),
        *(func.sum(gate * p[kind]) for kind in _OUTCOMES),
    ).group_by(p.cohort, p.arm)
    return _counts_of(await session.execute(stmt))


def _per_prospect(experiment: Experiment, since: datetime, now: datetime) -> Subquery:
    """One row per assigned prospect: its group and a 0/1 flag per outcome.

    A campaign's own outcomes (sent, read, replied) count from that campaign's events; the
    hold-out was sent nothing, so any reply counts for it. Opt-outs and qualification are the
    prospect's, whatever led to them.
    """
    a, e = ExperimentAssignment, Event
    own_message = or_(e.campaign_id == experiment.campaign_id, a.cohort == Cohort.HOLDOUT)

    def flag(kind: str, scope: Any = None) -> Any:
        hit = e.kind == kind if scope is None else and_(e.kind == kind, scope)
        return func.max(case((hit, 1), else_=0)).label(kind)

    return (
        select(
            a.cohort,
            a.arm,
            flag("sent", e.campaign_id == experiment.campaign_id),
            *(flag(k, own_message if k in _CAMPAIGN_KINDS else None) for k in _OUTCOMES),
        )
        .select_from(a)
        .outerjoin(
            e,
            and_(
                e.prospect_id == a.prospect_id,
                e.kind.in_(_CAMPAIGN_KINDS + _PROSPECT_KINDS),
                e.at >= since,
                e.at <= now,
            ),
        )
        .where(a.experiment_id == experiment.id)
        .group_by(a.prospect_id, a.cohort, a.arm)
        .subquery()
    )


def _counts_of(rows: Iterable[Any]) -> ExperimentCounts:
    test: dict[str, GroupCounts] = {}
    remainder: dict[str | None, GroupCounts] = {}
    holdout = GroupCounts()
    for cohort, arm, assigned, *sums in rows:
        sent, replied, read, opted_out, qualified = (int(v or 0) for v in sums)
        group = GroupCounts(assigned, sent, replied, read, opted_out, qualified)
        if Cohort(cohort) is Cohort.HOLDOUT:
            holdout = group
        elif Cohort(cohort) is Cohort.REMAINDER:
            remainder[arm] = group
        elif arm is not None:
            test[arm] = group
    return ExperimentCounts(test=test, holdout=holdout, remainder=remainder)


# --- the worker's reads and writes -----------------------------------------------------------


async def running_ids(session: AsyncSession, modes: Sequence[Mode]) -> list[uuid.UUID]:
    """Running experiments in ``modes``, oldest launch first."""
    stmt = (
        select(Experiment.id)
        .where(Experiment.status == ExperimentStatus.RUNNING, Experiment.mode.in_(modes))
        .order_by(Experiment.launched_at, Experiment.id)
    )
    return list((await session.scalars(stmt)).all())


async def lock_running(session: AsyncSession, experiment_id: uuid.UUID) -> Experiment | None:
    """The experiment, locked for this transaction, if it is still running and no other
    worker holds it (SKIP LOCKED: a busy experiment is simply left to its current owner)."""
    stmt = (
        select(Experiment)
        .where(Experiment.id == experiment_id, Experiment.status == ExperimentStatus.RUNNING)
        .with_for_update(skip_locked=True)
    )
    return await session.scalar(stmt)


async def claim_status(
    session: AsyncSession,
    experiment_id: uuid.UUID,
    *,
    to: ExperimentStatus,
    values: Mapping[str, Any],
) -> bool:
    """Move a running experiment to ``to``; ``False`` if another transaction already did.

    The guarded UPDATE makes acting on a decision exactly-once even where row locks are
    not available (SQLite): only the transaction that moves the row goes on to release.
    """
    stmt = (
        update(Experiment)
        .where(Experiment.id == experiment_id, Experiment.status == ExperimentStatus.RUNNING)
        .values(status=to, **values)
    )
    result = await session.execute(stmt)
    return bool(getattr(result, "rowcount", 0) == 1)


async def unreleased(session: AsyncSession, experiment_id: uuid.UUID) -> list[uuid.UUID]:
    """The held remainder not yet released, in a fixed order."""
    stmt = (
        select(ExperimentAssignment.prospect_id)
        .where(
            ExperimentAssignment.experiment_id == experiment_id,
            ExperimentAssignment.cohort == Cohort.REMAINDER,
            ExperimentAssignment.released_at.is_(None),
        )
        .order_by(ExperimentAssignment.prospect_id)
    )
    return list((await session.scalars(stmt)).all())


async def mark_released(
    session: AsyncSession,
    experiment_id: uuid.UUID,
    outcomes: Mapping[uuid.UUID, tuple[str | None, str]],
    *,
    now: datetime,
) -> None:
    """Record each released prospect's arm and outcome: one UPDATE per (arm, outcome) pair,
    of which a release has a handful."""
    groups: dict[tuple[str | None, str], list[uuid.UUID]] = {}
    for pid, key in outcomes.items():
        groups.setdefault(key, []).append(pid)
    for (arm, outcome), ids in groups.items():
        ids.sort()
        for start in range(0, len(ids), CHUNK):
            await session.execute(
                update(ExperimentAssignment)
                .where(
                    ExperimentAssignment.experiment_id == experiment_id,
                    ExperimentAssignment.prospect_id.in_(ids[start : start + CHUNK]),
                    ExperimentAssignment.released_at.is_(None),
                )
                .values(arm=arm, outcome=outcome, released_at=now)
                .execution_options(synchronize_session=False)
            )
