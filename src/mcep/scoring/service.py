"""Rules behind the leads and models endpoints: who may do what, feedback, and the lead view.

Models are firm-wide: any signed-in user may read the registry (it holds no personal data);
promoting and rolling back are model governance, for admins (who run the platform) and
compliance (who sign models off), never for PMs, whose leads the models judge.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from mcep.audit import service as audit
from mcep.auth.models import Role
from mcep.auth.principal import Permission, Principal
from mcep.contacts.crypto import Keyring
from mcep.contacts.models import Prospect
from mcep.errors import Forbidden
from mcep.scoring import repository as repo
from mcep.scoring.champion import ModelCache
from mcep.scoring.features import FeatureState, vector_from_json, vector_to_json
from mcep.scoring.model import Contribution
from mcep.scoring.models import FeedbackLabel, LeadFeedback, LeadState
from mcep.scoring.realtime import numeric_attributes, prospect_zone
from mcep.scoring.schemas import (
    ContributionOut,
    FeedbackIn,
    FeedbackOut,
    LeadDetailOut,
    LeadOut,
    ScorePointOut,
    TrendOut,
)

MODEL_MANAGERS = frozenset({Role.ADMIN, Role.COMPLIANCE})
TREND_DAYS = 7
FLAT = 1.0
HISTORY_LIMIT = 200


def require_model_manager(principal: Principal) -> None:
    if principal.role not in MODEL_MANAGERS:
        raise Forbidden("only admin and compliance users may promote or roll back models")


def _note_field(feedback_id: uuid.UUID) -> str:
    return f"lead-feedback:{feedback_id}"


async def give_feedback(
    session: AsyncSession,
    principal: Principal,
    prospect_id: uuid.UUID,
    body: FeedbackIn,
    *,
    keyring: Keyring,
    now: datetime,
) -> FeedbackOut:
    """Record a verdict with the features as they stand now (the training example); a reset
    re-arms qualification: the next score at or above the threshold qualifies again."""
    principal.require(Permission.OWNED_WRITE)
    prospect = await repo.get_prospect(session, principal, prospect_id, for_update=True)
    state = await repo.lead_state(session, prospect_id)
    feedback_id = uuid.uuid4()
    key = keyring.unwrap(prospect.wrapped_key) if prospect.wrapped_key else None
    row = LeadFeedback(
        id=feedback_id,
        prospect_id=prospect_id,
        pm_id=prospect.pm_id,
        label=body.label,
        note_enc=key.seal(_note_field(feedback_id), body.note) if key and body.note else None,
        features=_features_now(prospect, state, now=now),
        score=state.score if state else None,
        actor=principal.actor,
        at=now,
    )
    session.add(row)
    was_qualified = state is not None and state.qualified_at is not None
    if body.label is FeedbackLabel.RESET and state is not None:
        state.qualified_at, state.qualified_score = None, None
    await session.flush()
    await audit.append(
        session,
        actor=principal.actor,
        action="lead.reset" if body.label is FeedbackLabel.RESET else "lead.feedback",
        object_type="prospect",
        object_id=str(prospect_id),
        details={"label": body.label.value, "score": row.score, "was_qualified": was_qualified,
                 "note": body.note is not None},
        at=now,
    )  # fmt: skip
    return _feedback_out(row, note=body.note)


def _features_now(
    prospect: Prospect, state: LeadState | None, *, now: datetime
) -> dict[str, float | None]:
    """The prospect's feature vector as of ``now``, from its stored aggregates."""
    zone = prospect_zone(prospect.timezone)
    aggregates = FeatureState.from_dict(state.state, tz=zone) if state else FeatureState(tz=zone)
    attributes = numeric_attributes(prospect.attributes)
    return vector_to_json(aggregates.features(now=now, attributes=attributes))


def _feedback_out(row: LeadFeedback, *, note: str | None) -> FeedbackOut:
    return FeedbackOut(
        id=row.id,
        prospect_id=row.prospect_id,
        label=row.label,
        note=note,
        score=row.score,
        actor=row.actor,
        at=row.at,
    )


# --- the lead view -----------------------------------------------------------------------


def _trend(current: float | None, reference: float | None) -> TrendOut | None:
    if current is None or reference is None:
        return None
    delta = round(current - reference, 4)
    direction: Literal["up", "down", "flat"] = (
        "up" if delta >= FLAT else "down" if delta <= -FLAT else "flat"
    )
    return TrendOut(delta=delta, direction=direction, days=TREND_DAYS)


async def _explanations(
    session: AsyncSession, states: Sequence[LeadState], models: ModelCache
) -> dict[uuid.UUID, list[ContributionOut]]:
    """Top contributions of each state's score, by the model version that gave it (batched)."""
    groups: dict[int, list[LeadState]] = defaultdict(list)
    for state in states:
        if state.model_version_id is not None and state.score is not None:
            groups[state.model_version_id].append(state)
    explained: dict[uuid.UUID, list[ContributionOut]] = {}
    for version_id, members in groups.items():
        loaded = await models.model(session, version_id)
        if loaded is None:
            continue
        matrix = loaded.scorer.encode_many([vector_from_json(s.features) for s in members])
        for state, reasons in zip(members, loaded.scorer.explain_batch(matrix), strict=True):
            explained[state.prospect_id] = [_contribution(c) for c in reasons]
    return explained


def _contribution(c: Contribution) -> ContributionOut:
    return ContributionOut(feature=c.feature, value=c.value, log_odds=round(c.log_odds, 6))


def _name(name_enc: bytes | None, wrapped_key: bytes | None, keyring: Keyring) -> str | None:
    if name_enc is None or wrapped_key is None:
        return None
    return keyring.unwrap(wrapped_key).open("name", name_enc)


async def lead_views(
    session: AsyncSession,
    rows: Sequence[repo.LeadRow],
    *,
    keyring: Keyring,
    models: ModelCache,
    now: datetime,
) -> list[LeadOut]:
    """The API view of a page of leads: threshold, trend and explanation included."""
    states = [r.state for r in rows]
    ids = [s.prospect_id for s in states]
    thresholds = await repo.thresholds(session, {s.pm_id for s in states})
    references = await repo.scores_at_or_before(
        session, ids, cutoff=now - timedelta(days=TREND_DAYS)
    )
    explained = await _explanations(session, states, models)
    versions = await repo.version_numbers(
        session, (s.model_version_id for s in states if s.model_version_id)
    )
    labels = await repo.last_labels(session, ids)
    return [
        LeadOut(
            prospect_id=s.prospect_id,
            pm_id=s.pm_id,
            name=_name(r.name_enc, r.wrapped_key, keyring),
            score=s.score,
            threshold=thresholds[s.pm_id],
            qualified=s.qualified_at is not None,
            qualified_at=s.qualified_at,
            scored_at=s.scored_at,
            model_version=versions.get(s.model_version_id) if s.model_version_id else None,
            trend=_trend(s.score, references.get(s.prospect_id)),
            explanation=explained.get(s.prospect_id, []),
            last_feedback=labels.get(s.prospect_id),
        )
        for r, s in zip(rows, states, strict=True)
    ]


async def lead_detail(
    session: AsyncSession,
    principal: Principal,
    prospect_id: uuid.UUID,
    *,
    keyring: Keyring,
    models: ModelCache,
    now: datetime,
) -> LeadDetailOut:
    """One prospect as a lead, with its score history and feedback; an unscored prospect the
    caller may see answers with an empty score."""
    principal.require(Permission.OWNED_READ)
    prospect = await repo.get_prospect(session, principal, prospect_id)
    state = await repo.lead_state(session, prospect_id)
    if state is None:
        state = LeadState(
            prospect_id=prospect.id, pm_id=prospect.pm_id, state={}, features={}, score=None
        )
    row = repo.LeadRow(state, prospect.name_enc, prospect.wrapped_key)
    [view] = await lead_views(session, [row], keyring=keyring, models=models, now=now)
    history = await repo.score_history(session, prospect_id, limit=HISTORY_LIMIT)
    versions = await repo.version_numbers(
        session, (h.model_version_id for h in history if h.model_version_id)
    )
    feedback = await repo.feedback_for(session, prospect_id)
    key = keyring.unwrap(prospect.wrapped_key) if prospect.wrapped_key else None
    return LeadDetailOut(
        **view.model_dump(),
        history=[
            ScorePointOut(
                at=h.at,
                score=h.score,
                model_version=versions.get(h.model_version_id) if h.model_version_id else None,
            )
            for h in history
        ],
        feedback=[
            _feedback_out(
                f, note=key.open(_note_field(f.id), f.note_enc) if key and f.note_enc else None
            )
            for f in feedback
        ],
        features=dict(state.features),
    )
