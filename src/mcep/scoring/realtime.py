"""Real-time scoring: fold new events into prospects' features, score them, qualify leads.

One call of :func:`process_events` is one batch in the caller's transaction:

1. lock the durable cursor (``scoring_cursors``; ``SKIP LOCKED`` on PostgreSQL, so a second
   worker simply finds it busy) and read the next events in id order;
2. load the affected prospects' feature aggregates (``lead_states.state``), fold the events in
   (:class:`mcep.scoring.features.FeatureState`) and score the new vectors with the champion
   (the raw booster, in one matrix per model; no explanations on this path);
3. write states, ``prospects.score``, score history and the cursor, each one statement;
4. qualify: a score that reaches the PM's threshold for the first time sets ``qualified_at``
   (conditionally, in SQL) and appends a ``qualified`` event (with the top reasons, for the CRM
   consumer); the batch's qualifications go into one audit entry that lists each of them. It
   never fires again unless an advisor resets the lead.

The cursor moves in the same transaction as everything it produced, so a crash anywhere loses
nothing and applies nothing twice. Persisting the aggregates was chosen over recomputing from
each prospect's whole history: re-reading every event and decrypting and sentiment-scoring every
past reply costs far more per batch (see ``scripts/bench_scoring_job.py``).

With no champion yet, features are still kept current but scores stay empty (``NULL``); once a
champion is promoted, :func:`rescore_stale` scores every prospect whose score doesn't come from
its champion, a batch at a time, so a promotion or a rollback reaches all prospects.

PostgreSQL may commit event ids out of order (a sequence hands them out before commit), so a
hole in the ids may be a transaction still in flight: :class:`GapGuard` waits for a hole to
fill for up to ``gap_timeout`` seconds before stepping over it (a rolled-back insert leaves a
hole forever). SQLite has one writer at a time, so its ids commit in order.

Opted-out prospects keep a score but never qualify: a lead handed to a CRM must be reachable.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from cryptography.exceptions import InvalidTag
from sqlalchemy.ext.asyncio import AsyncSession

from mcep.audit import service as audit
from mcep.contacts.crypto import DataKey, Keyring
from mcep.db.bulk import bulk_insert
from mcep.dispatch.models import Event
from mcep.scoring import repository as repo
from mcep.scoring.champion import Champions, LoadedModel, ModelCache
from mcep.scoring.features import (
    EngagementEvent,
    EventKind,
    FeatureState,
    vector_to_json,
)
from mcep.scoring.model import Contribution
from mcep.scoring.models import GLOBAL_SCOPE

log = logging.getLogger(__name__)

CURSOR = "scoring"
ACTOR = "worker:scoring"
QUALIFIED = "qualified"
FOLDED = frozenset(
    {
        EventKind.SENT,
        EventKind.DELIVERED,
        EventKind.READ,
        EventKind.REPLIED,
        EventKind.FAILED,
        EventKind.OPTED_OUT,
        EventKind.CAMPAIGN_OUTCOME,
    }
)
"""Event kinds that change features; the rest only move the cursor."""


class CursorMoved(RuntimeError):
    """Another worker advanced the cursor first; this batch must be rolled back."""


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What one batch did. ``busy``: another worker holds the cursor."""

    events: int = 0
    prospects: int = 0
    scored: int = 0
    qualified: tuple[uuid.UUID, ...] = ()
    cursor: int = 0
    busy: bool = False


# --- holes in the event ids --------------------------------------------------------------


@dataclass
class GapGuard:
    """Decides how much of a fetched run of ids may be consumed now (see the module doc)."""

    timeout: float = 10.0
    clock: Callable[[], float] = time.monotonic
    _first_seen: dict[int, float] = field(default_factory=dict)

    def usable(self, after: int, ids: Sequence[int]) -> int:
        """How many of ``ids`` (ascending, all past ``after``) can be applied now."""
        expected = after + 1
        for i, event_id in enumerate(ids):
            if event_id != expected and not self._waited_enough(expected):
                return i
            expected = event_id + 1
        self._forget(below=expected)
        return len(ids)

    def _waited_enough(self, hole: int) -> bool:
        if self.timeout <= 0:
            return True
        now = self.clock()
        first = self._first_seen.setdefault(hole, now)
        return now - first >= self.timeout

    def _forget(self, *, below: int) -> None:
        for hole in [h for h in self._first_seen if h < below]:
            del self._first_seen[hole]


# --- the batch ---------------------------------------------------------------------------


async def process_events(
    session: AsyncSession,
    *,
    keyring: Keyring,
    models: ModelCache,
    now: datetime,
    batch_size: int = 1000,
    guard: GapGuard | None = None,
    cursor: str = CURSOR,
) -> BatchResult:
    """Apply the next batch of events (see the module doc); flushes, never commits."""
    position = await repo.lock_cursor(session, cursor, now=now)
    if position is None:
        return BatchResult(busy=True)
    events = await repo.events_after(session, position, limit=batch_size)
    if guard is not None and repo.is_postgres(session):
        events = events[: guard.usable(position, [e.id for e in events])]
    if not events:
        return BatchResult(cursor=position)
    by_prospect: dict[uuid.UUID, list[repo.EventRow]] = defaultdict(list)
    for event in events:
        if event.prospect_id is not None and event.kind in FOLDED:
            by_prospect[event.prospect_id].append(event)
    champions = await models.champions(session)
    outcome = await _update_prospects(
        session, by_prospect, keyring=keyring, champions=champions, now=now
    )
    last = events[-1].id
    if not await repo.advance_cursor(session, cursor, expected=position, to=last, now=now):
        raise CursorMoved(f"cursor {cursor!r} moved past {position} while this batch ran")
    return BatchResult(len(events), outcome.prospects, outcome.scored, outcome.qualified, last)


async def rescore_stale(
    session: AsyncSession,
    *,
    models: ModelCache,
    now: datetime,
    limit: int = 1000,
    cursor: str = CURSOR,
) -> BatchResult:
    """Score up to ``limit`` prospects whose score doesn't come from their current champion.

    Holds the cursor lock, so it never races the event path over the same prospects.
    """
    position = await repo.lock_cursor(session, cursor, now=now)
    if position is None:
        return BatchResult(busy=True)
    champions = await models.champions(session)
    ids = await repo.stale_states(session, scope_versions=_scope_versions(champions), limit=limit)
    if not ids:
        return BatchResult(cursor=position)
    outcome = await _update_prospects(
        session, {pid: [] for pid in ids}, keyring=None, champions=champions, now=now
    )
    return BatchResult(0, outcome.prospects, outcome.scored, outcome.qualified, position)


def _scope_versions(champions: Champions) -> dict[uuid.UUID | None, int]:
    versions: dict[uuid.UUID | None, int] = {}
    for scope, model in champions.by_scope.items():
        if scope == GLOBAL_SCOPE:
            versions[None] = model.version_id
        else:
            versions[uuid.UUID(scope.split(":", 1)[1])] = model.version_id
    return versions


# --- folding, scoring, writing -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Outcome:
    prospects: int
    scored: int
    qualified: tuple[uuid.UUID, ...]


@dataclass(slots=True)
class _Lead:
    prospect: repo.ProspectRow
    previous: repo.StateRow | None
    state: FeatureState
    events: list[repo.EventRow]
    features: dict[str, float]
    model: LoadedModel | None = None
    row: Any = None  # the encoded input row, kept for explaining a qualification
    score: float | None = None


async def _update_prospects(
    session: AsyncSession,
    by_prospect: Mapping[uuid.UUID, list[repo.EventRow]],
    *,
    keyring: Keyring | None,
    champions: Champions,
    now: datetime,
) -> _Outcome:
    if not by_prospect:
        return _Outcome(0, 0, ())
    prospects = await repo.prospects(session, by_prospect)
    live = {pid: p for pid, p in prospects.items() if not p.erased}
    states = await repo.lead_states(session, live)
    texts = await _reply_texts(session, by_prospect, live, keyring) if keyring else {}
    leads = [
        _fold(live[pid], states.get(pid), by_prospect[pid], texts, now=now) for pid in sorted(live)
    ]
    _score(leads, champions)
    await _write(session, leads, now=now)
    qualified = await _qualify(session, leads, now=now)
    return _Outcome(len(leads), sum(lead.score is not None for lead in leads), qualified)


def _fold(
    prospect: repo.ProspectRow,
    previous: repo.StateRow | None,
    events: Sequence[repo.EventRow],
    texts: Mapping[int, str],
    *,
    now: datetime,
) -> _Lead:
    tz = prospect_zone(prospect.timezone)
    state = FeatureState.from_dict(previous.state, tz=tz) if previous else FeatureState(tz=tz)
    for event in events:
        state.add(_engagement(event, texts.get(event.id)))
    features = state.features(now=now, attributes=numeric_attributes(prospect.attributes))
    return _Lead(prospect, previous, state, list(events), features)


def _score(leads: Sequence[_Lead], champions: Champions) -> None:
    """Score every lead whose PM has a champion: one matrix and one predict per model."""
    groups: dict[int, list[_Lead]] = defaultdict(list)
    for lead in leads:
        lead.model = champions.for_pm(lead.prospect.pm_id)
        if lead.model is not None:
            groups[lead.model.version_id].append(lead)
    for members in groups.values():
        scorer = members[0].model.scorer  # type: ignore[union-attr]
        matrix = scorer.encode_many([lead.features for lead in members])
        scores = scorer.score_batch(matrix)
        for lead, row, score in zip(members, matrix, scores, strict=True):
            lead.row, lead.score = row, round(float(score), 4)


async def _write(session: AsyncSession, leads: Sequence[_Lead], *, now: datetime) -> None:
    states, history, prospect_scores = [], [], {}
    for lead in leads:
        previous = lead.previous
        version_id = lead.model.version_id if lead.model else None
        last_event = max((e.id for e in lead.events), default=None)
        states.append(
            {
                "prospect_id": lead.prospect.id,
                "pm_id": lead.prospect.pm_id,
                "state": lead.state.to_dict(),
                "features": vector_to_json(lead.features),
                "score": lead.score,
                "model_version_id": version_id,
                "scored_at": now if lead.score is not None else None,
                "events_seen": (previous.events_seen if previous else 0) + len(lead.events),
                "last_event_id": max(last_event or 0, previous.last_event_id if previous else 0),
                "updated_at": now,
            }
        )
        if lead.score is None:
            continue
        prospect_scores[lead.prospect.id] = lead.score
        if previous is None or (previous.score, previous.model_version_id) != (
            lead.score,
            version_id,
        ):
            history.append(
                {
                    "prospect_id": lead.prospect.id,
                    "pm_id": lead.prospect.pm_id,
                    "at": now,
                    "score": lead.score,
                    "model_version_id": version_id,
                    "event_id": last_event,
                }
            )
    await repo.save_states(session, states)
    await repo.set_prospect_scores(session, prospect_scores)
    await repo.add_history(session, history)


async def _qualify(
    session: AsyncSession, leads: Sequence[_Lead], *, now: datetime
) -> tuple[uuid.UUID, ...]:
    thresholds = await repo.thresholds(session, {lead.prospect.pm_id for lead in leads})
    candidates = {
        lead.prospect.id: lead
        for lead in leads
        if lead.score is not None
        and lead.score >= thresholds[lead.prospect.pm_id]
        and not lead.prospect.opted_out
        and (lead.previous is None or lead.previous.qualified_at is None)
    }
    if not candidates:
        return ()
    changed = await repo.mark_qualified(
        session, {pid: lead.score for pid, lead in candidates.items() if lead.score is not None},
        now=now,
    )  # fmt: skip
    if not changed:
        return ()
    qualified = [candidates[pid] for pid in changed]
    details = qualification_details(qualified, thresholds)
    await bulk_insert(
        session,
        Event.__table__,  # type: ignore[arg-type]
        [_qualified_event(lead, d, now=now) for lead, d in zip(qualified, details, strict=True)],
    )
    await _audit_qualifications(session, qualified, details, now=now)
    return tuple(changed)


def qualification_details(
    leads: Sequence[_Lead], thresholds: Mapping[uuid.UUID, int]
) -> list[dict[str, Any]]:
    """What a CRM consumer needs of each: score, threshold, model and top reasons (batched)."""
    reasons: dict[uuid.UUID, tuple[Contribution, ...]] = {}
    groups: dict[int, list[_Lead]] = defaultdict(list)
    for lead in leads:
        assert lead.model is not None and lead.score is not None
        groups[lead.model.version_id].append(lead)
    for members in groups.values():
        scorer = members[0].model.scorer  # type: ignore[union-attr]
        matrix = np.vstack([np.asarray(lead.row, dtype=np.float64) for lead in members])
        for lead, explained in zip(members, scorer.explain_batch(matrix), strict=True):
            reasons[lead.prospect.id] = explained
    return [
        {
            "score": lead.score,
            "threshold": thresholds[lead.prospect.pm_id],
            "model": lead.model.name,  # type: ignore[union-attr]
            "model_version": lead.model.version,  # type: ignore[union-attr]
            "model_version_id": lead.model.version_id,  # type: ignore[union-attr]
            "reasons": [
                {"feature": c.feature, "value": c.value, "log_odds": round(c.log_odds, 6)}
                for c in reasons[lead.prospect.id]
            ],
        }
        for lead in leads
    ]


async def _audit_qualifications(
    session: AsyncSession,
    leads: Sequence[_Lead],
    details: Sequence[Mapping[str, Any]],
    *,
    now: datetime,
) -> None:
    """One audit entry per batch, naming every lead it qualified; its id is the SHA-256 of
    those records, so the chain stays off the hot path yet vouches for each qualification."""
    records = [
        {
            "prospect_id": str(lead.prospect.id),
            "pm_id": str(lead.prospect.pm_id),
            "score": d["score"],
            "threshold": d["threshold"],
            "model_version": d["model_version"],
        }
        for lead, d in zip(leads, details, strict=True)
    ]
    digest = hashlib.sha256(json.dumps(records, sort_keys=True).encode()).hexdigest()
    await audit.append(
        session,
        actor=ACTOR,
        action="lead.qualified",
        object_type="qualified_leads",
        object_id=digest,
        details={"count": len(records), "leads": records},
        at=now,
    )


def _qualified_event(lead: _Lead, details: dict[str, Any], *, now: datetime) -> dict[str, Any]:
    # The latest campaign event that moved the score tells the consumer which campaign earned
    # the lead (none when a new champion's rescore qualified it).
    with_campaign = [e for e in lead.events if e.campaign_id is not None]
    trigger = with_campaign[-1] if with_campaign else None
    return {
        "at": now,
        "kind": QUALIFIED,
        "campaign_id": trigger.campaign_id if trigger else None,
        "variant": trigger.variant if trigger else None,
        "channel": trigger.channel if trigger else None,
        "device_id": None,
        "prospect_id": lead.prospect.id,
        "pm_id": lead.prospect.pm_id,
        "message_id": trigger.message_id if trigger else None,
        "details": details,
    }


# --- inputs ------------------------------------------------------------------------------


def _engagement(event: repo.EventRow, text: str | None) -> EngagementEvent:
    outcome = event.details.get("outcome")
    return EngagementEvent(
        kind=EventKind(event.kind),
        at=event.at,
        channel=event.channel or "",
        campaign_id=None if event.campaign_id is None else str(event.campaign_id),
        text=text,
        outcome=outcome if isinstance(outcome, str) else None,
    )


def numeric_attributes(attributes: Mapping[str, Any]) -> dict[str, float]:
    """Profile attributes the model can read: numbers and booleans (text ones are left out)."""
    found = {}
    for name, value in attributes.items():
        if isinstance(value, bool | int | float) and math.isfinite(float(value)):
            found[str(name)] = float(value)
    return found


def prospect_zone(name: str) -> ZoneInfo:
    """The prospect's time zone (UTC if the name is unknown here)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


async def _reply_texts(
    session: AsyncSession,
    by_prospect: Mapping[uuid.UUID, Iterable[repo.EventRow]],
    prospects: Mapping[uuid.UUID, repo.ProspectRow],
    keyring: Keyring,
) -> dict[int, str]:
    """Reply texts by event id, opened with each prospect's data key (in memory only)."""
    wanted: dict[tuple[str, str], repo.EventRow] = {}
    for pid, events in by_prospect.items():
        for event in events:
            provider_id = event.details.get("provider_event_id")
            if pid in prospects and event.kind == EventKind.REPLIED and provider_id:
                wanted[(event.channel or "", str(provider_id))] = event
    found = await repo.inbound_texts(session, wanted)
    keys: dict[uuid.UUID, DataKey | None] = {}
    texts: dict[int, str] = {}
    for key, (row_id, prospect_id, sealed) in found.items():
        event = wanted[key]
        if sealed is None or prospect_id != event.prospect_id or prospect_id is None:
            continue
        if prospect_id not in keys:
            wrapped = prospects[prospect_id].wrapped_key
            keys[prospect_id] = keyring.unwrap(wrapped) if wrapped else None
        data_key = keys[prospect_id]
        if data_key is None:
            continue
        try:
            texts[event.id] = data_key.open(f"inbound:{row_id}", sealed)
        except InvalidTag:
            log.warning("reply %s does not open with its prospect's key; scored without text", key)
    return texts
