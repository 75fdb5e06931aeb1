"""Advisor feedback -> labels -> a challenger that replaces the champion only when it is better.

A simulated campaign: recipients who reply with interest convert far more often than those who
object or stay silent. Advisors record who converted; the challenger trained on that feedback
must separate them, and qualified leads must then fire exactly once at the PM's threshold.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sqlalchemy import insert, select

from mcep.auth.models import Role
from mcep.dispatch.models import Event
from mcep.runtime import Runtime
from mcep.scoring import realtime
from mcep.scoring.champion import ModelCache
from mcep.scoring.errors import ScoringInputError
from mcep.scoring.models import FeedbackLabel, LeadState, ModelVersion
from mcep.scoring.realtime import GapGuard
from mcep.scoring.schemas import FeedbackIn
from mcep.scoring.service import give_feedback
from mcep.scoring.settings import ScoringSettings
from mcep.scoring.tasks import retrain_once, train_on_feedback
from mcep.scoring.training import TrainingConfig
from tests.conftest import Actor, make_actor
from tests.integration.campaigns import builders as campaign_builders
from tests.integration.scoring import builders as b

NOW = b.T0 + timedelta(days=5)
CONFIG = TrainingConfig(seed=0, num_threads=1, max_rounds=300)
SETTINGS = ScoringSettings(retrain_min_gain=0.01, retrain_min_auc=0.6, gap_timeout=0)
REPLIES = {"interest": b.INTERESTED, "objection": b.NOT_INTERESTED, "question": "What fees?"}
CONVERSION = {"interest": 0.85, "objection": 0.05, "question": 0.25, "silent": 0.05}
THRESHOLD = 60


@dataclass(frozen=True)
class Campaign:
    pm: Actor
    kinds: dict[uuid.UUID, str]
    converted: dict[uuid.UUID, bool]


async def simulate(runtime: Runtime, recipients: int = 400, *, seed: int = 0) -> Campaign:
    """Send to everyone; some reply (with interest, an objection or a question); then the
    advisor records who converted. Features are computed by the scoring job itself."""
    rng = np.random.default_rng(seed)
    pm = await make_actor(runtime, Role.PM)
    assert pm.pm_id is not None
    await campaign_builders.add_profile(runtime, pm, lead_threshold=THRESHOLD)
    prospects = await campaign_builders.add_prospects(runtime, pm, recipients)
    campaign_id = uuid.uuid4()
    events, kinds = [], {}
    for i, pid in enumerate(prospects):
        kind = str(
            rng.choice(["interest", "objection", "question", "silent"], p=[0.25, 0.2, 0.15, 0.4])
        )
        kinds[pid] = kind
        at = b.T0 + timedelta(minutes=i)
        events += b.contact(pid, pm.pm_id, at=at, campaign_id=campaign_id)
        if kind != "silent":
            reply_at = at + timedelta(hours=float(rng.uniform(1, 30)))
            events.append(await b.reply(runtime, pid, pm.pm_id, REPLIES[kind], at=reply_at))
    async with runtime.sessions() as session, session.begin():
        await session.execute(insert(Event), events)
    await drain(runtime)
    converted = {pid: bool(rng.random() < CONVERSION[kinds[pid]]) for pid in prospects}
    async with runtime.sessions() as session, session.begin():
        for pid, won in converted.items():
            label = FeedbackLabel.CONVERTED if won else FeedbackLabel.NOT_A_LEAD
            await give_feedback(
                session, campaign_builders.principal(pm), pid, FeedbackIn(label=label),
                keyring=runtime.keyring, now=NOW,
            )  # fmt: skip
    return Campaign(pm, kinds, converted)


async def drain(runtime: Runtime, models: ModelCache | None = None) -> None:
    models = models or ModelCache(max_age=0)
    while True:
        async with runtime.sessions() as session, session.begin():
            result = await realtime.process_events(
                session, keyring=runtime.keyring, models=models, now=NOW, guard=GapGuard(0)
            )
            if not result.events:
                result = await realtime.rescore_stale(session, models=models, now=NOW)
        if not (result.events or result.scored):
            return


async def test_feedback_trains_a_first_champion_that_separates_interested_repliers(
    runtime: Runtime,
) -> None:
    campaign = await simulate(runtime)
    outcome = await train_on_feedback(runtime, SETTINGS, config=CONFIG, actor="test")
    c = outcome.comparison
    print(f"\nchallenger hold-out ROC-AUC {c.challenger['roc_auc']:.3f} on {c.holdout_rows} rows")
    assert outcome.promoted and c.champion is None and c.challenger["roc_auc"] >= 0.7

    # Every prospect is rescored by the new champion; the interested ones come out on top.
    await drain(runtime)
    async with runtime.sessions() as session:
        states = {s.prospect_id: s for s in await session.scalars(select(LeadState))}
    scores = [states[pid].score for pid in campaign.converted]
    truth = [campaign.converted[pid] for pid in campaign.converted]
    print(f"in-sample ROC-AUC of scores against conversions: {roc_auc_score(truth, scores):.3f}")
    by_kind = {
        kind: float(np.mean([states[p].score or 0 for p, k in campaign.kinds.items() if k == kind]))
        for kind in CONVERSION
    }
    assert by_kind["interest"] > 50 > by_kind["question"] >= by_kind["silent"]

    # Qualified at the PM's threshold: exactly the prospects at or above it, each once.
    async with runtime.sessions() as session:
        stmt = select(Event.prospect_id).where(Event.kind == "qualified")
        fired = [pid for pid in await session.scalars(stmt) if pid is not None]
    above = {pid for pid, s in states.items() if s.score is not None and s.score >= THRESHOLD}
    assert sorted(fired) == sorted(above) and len(above) > 10
    await drain(runtime)
    async with runtime.sessions() as session:
        again = list(await session.scalars(select(Event.id).where(Event.kind == "qualified")))
    assert len(again) == len(fired)

    [entry] = await b.audit_actions(runtime, "model.challenged")
    assert entry.details["promote"] is True and entry.details["champion"] is None


async def test_a_better_challenger_replaces_a_weak_champion(runtime: Runtime) -> None:
    # A champion that learnt the relation backwards: interested repliers score lowest.
    weak = await b.register(runtime, artifact=b.engagement_artifact(5, -1.0), promote=True)
    await simulate(runtime, seed=1)
    outcome = await train_on_feedback(runtime, SETTINGS, config=CONFIG, actor="test")
    c = outcome.comparison
    assert c.champion is not None and c.champion_version == weak.version
    assert outcome.promoted and c.challenger["roc_auc"] >= c.champion["roc_auc"] + 0.01
    async with runtime.sessions() as session:
        champion = await ModelCache(max_age=0).champions(session)
    assert champion.by_scope["global"].version == outcome.version
    [entry] = await b.audit_actions(runtime, "model.challenged")
    assert entry.details["champion"]["roc_auc"] == pytest.approx(c.champion["roc_auc"])
    assert entry.details["holdout_rows"] == c.holdout_rows


async def test_a_challenger_no_better_than_the_champion_is_kept_out(runtime: Runtime) -> None:
    await simulate(runtime, seed=2)
    first = await train_on_feedback(runtime, SETTINGS, config=CONFIG, actor="test")
    # Nothing new to learn from: the periodic job doesn't even train.
    assert await retrain_once(runtime, SETTINGS, config=CONFIG) is None
    # Forced, the same labels give the same model: it can't beat itself by min_gain.
    second = await train_on_feedback(runtime, SETTINGS, config=CONFIG, actor="test")
    assert first.promoted and not second.promoted
    assert second.comparison.champion_version == first.version
    async with runtime.sessions() as session:
        champion = await ModelCache(max_age=0).champions(session)
        registered = list(await session.scalars(select(ModelVersion.version)))
    assert champion.by_scope["global"].version == first.version
    assert sorted(registered) == [first.version, second.version]  # the loser is kept, unpromoted
    entries = await b.audit_actions(runtime, "model.challenged")
    assert [e.details["promote"] for e in entries] == [True, False]
    assert "does not beat" in entries[1].details["reason"]


async def test_too_few_labels_train_nothing(runtime: Runtime) -> None:
    pm = await make_actor(runtime, Role.PM)
    prospects = await campaign_builders.add_prospects(runtime, pm, 10)
    async with runtime.sessions() as session, session.begin():
        for i, pid in enumerate(prospects):
            label = FeedbackLabel.GOOD_LEAD if i % 2 else FeedbackLabel.NOT_A_LEAD
            await give_feedback(
                session, campaign_builders.principal(pm), pid, FeedbackIn(label=label),
                keyring=runtime.keyring, now=NOW,
            )  # fmt: skip
    with pytest.raises(ScoringInputError, match="at least 20 of each"):
        await train_on_feedback(runtime, SETTINGS, config=CONFIG, actor="test")
    assert await retrain_once(runtime, SETTINGS, config=CONFIG) is None
    async with runtime.sessions() as session:
        assert list(await session.scalars(select(ModelVersion.id))) == []
