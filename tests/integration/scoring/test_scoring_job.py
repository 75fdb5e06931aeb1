"""The scoring job on hand-made event streams, on SQLite and PostgreSQL: features and scores
written, qualification exactly once, and a cursor that survives crashes and restarts."""

from __future__ import annotations

import asyncio
import math
import uuid
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from mcep.auth.models import Role
from mcep.campaigns.models import EngagementProfile
from mcep.contacts import service as contacts_service
from mcep.contacts.models import Prospect
from mcep.dispatch.models import Event
from mcep.runtime import Runtime
from mcep.scoring import realtime
from mcep.scoring import repository as repo
from mcep.scoring.champion import ModelCache
from mcep.scoring.features import EngagementEvent, EventKind, FeatureState, compute_features
from mcep.scoring.models import FeedbackLabel, LeadFeedback, LeadScore, LeadState
from mcep.scoring.realtime import BatchResult, GapGuard
from mcep.scoring.schemas import FeedbackIn
from mcep.scoring.service import give_feedback
from mcep.scoring.settings import ScoringSettings
from mcep.scoring.tasks import BatchScorer, RetrainingJob, ScoringJob
from mcep.worker.base import WorkerContext
from mcep.worker.jobs import JOBS
from tests.conftest import Actor, make_actor
from tests.integration.campaigns import builders as campaign_builders
from tests.integration.scoring import builders as b

NOW = b.T0 + timedelta(days=3)


@pytest.fixture
async def pm(runtime: Runtime) -> Actor:
    return await make_actor(runtime, Role.PM)


async def run_batch(
    runtime: Runtime, models: ModelCache | None = None, *, batch_size: int = 1000
) -> BatchResult:
    async with runtime.sessions() as session, session.begin():
        return await realtime.process_events(
            session,
            keyring=runtime.keyring,
            models=models or ModelCache(max_age=0),
            now=NOW,
            batch_size=batch_size,
            guard=GapGuard(timeout=0),
        )


async def drain(runtime: Runtime, models: ModelCache | None = None) -> int:
    total = 0
    while (result := await run_batch(runtime, models)).events:
        total += result.events
    return total


async def state_of(runtime: Runtime, prospect_id: uuid.UUID) -> LeadState | None:
    async with runtime.sessions() as session:
        return await session.get(LeadState, prospect_id)


async def qualified_events(runtime: Runtime, prospect_id: uuid.UUID) -> list[Event]:
    async with runtime.sessions() as session:
        rows = await session.scalars(
            select(Event).where(Event.kind == "qualified", Event.prospect_id == prospect_id)
        )
        return list(rows)


async def interested_history(runtime: Runtime, pm: Actor, prospect_id: uuid.UUID) -> list[int]:
    assert pm.pm_id is not None
    rows = b.contact(prospect_id, pm.pm_id, at=b.T0)
    rows.append(
        await b.reply(runtime, prospect_id, pm.pm_id, b.INTERESTED, at=b.T0 + timedelta(hours=2))
    )
    return await b.add_events(runtime, rows)


async def test_events_become_features_scores_and_history(runtime: Runtime, pm: Actor) -> None:
    await b.register(runtime, promote=True)
    keen, silent = await campaign_builders.add_prospects(runtime, pm, 2)
    assert pm.pm_id is not None
    await interested_history(runtime, pm, keen)
    await b.add_events(runtime, b.contact(silent, pm.pm_id, at=b.T0))

    # Nine events, then the job's own "qualified" event (keen reached 70), which it skips.
    assert await drain(runtime) == 9 + 1

    keen_state, silent_state = await state_of(runtime, keen), await state_of(runtime, silent)
    assert keen_state is not None and silent_state is not None
    # queued events move the cursor but are not features: sent, delivered, read, replied.
    assert (keen_state.events_seen, silent_state.events_seen) == (4, 3)
    assert keen_state.features["intent_interest"] == 1.0
    assert keen_state.features["replies_count"] == 1.0
    assert keen_state.score is not None and silent_state.score is not None
    assert keen_state.score > 70 > 20 > silent_state.score
    async with runtime.sessions() as session:
        stmt = select(Prospect.id, Prospect.score).where(Prospect.id.in_([keen, silent]))
        scores = dict((await session.execute(stmt)).all())
        history = list(
            await session.scalars(select(LeadScore).where(LeadScore.prospect_id == keen))
        )
    assert scores == {keen: keen_state.score, silent: silent_state.score}
    assert [(h.score, h.model_version_id) for h in history] == [
        (keen_state.score, keen_state.model_version_id)
    ]


async def test_the_persisted_state_equals_the_whole_history(runtime: Runtime, pm: Actor) -> None:
    """Folding batch by batch through the database gives what the pure function gives on the
    whole history, reply texts (read back from the sealed inbound rows) included."""
    [prospect] = await campaign_builders.add_prospects(runtime, pm, 1, timezone="Asia/Tokyo")
    assert pm.pm_id is not None
    texts = {}
    rows = b.contact(prospect, pm.pm_id, at=b.T0)
    for day, text in ((0, b.INTERESTED), (1, b.NOT_INTERESTED)):
        if day:
            rows += b.contact(prospect, pm.pm_id, at=b.T0 + timedelta(days=day))
        at = b.T0 + timedelta(days=day, hours=5)
        rows.append(await b.reply(runtime, prospect, pm.pm_id, text, at=at))
        texts[at] = text
    await b.add_events(runtime, rows)
    while (await run_batch(runtime, batch_size=3)).events:
        pass

    history = [
        EngagementEvent(
            EventKind(r["kind"]),
            r["at"],
            r["channel"],
            str(r["campaign_id"]) if r["campaign_id"] else None,
            text=texts.get(r["at"]) if r["kind"] == "replied" else None,
        )
        for r in rows
    ]
    expected = compute_features(history, now=NOW, tz=ZoneInfo("Asia/Tokyo"))
    assert expected["sentiment_min"] < 0 < expected["sentiment_mean"] + 1
    state = await state_of(runtime, prospect)
    assert state is not None
    rebuilt = FeatureState.from_dict(state.state, tz=ZoneInfo("Asia/Tokyo"))
    assert rebuilt.features(now=NOW) == pytest.approx(expected, nan_ok=True)
    stored = {k: math.nan if v is None else v for k, v in state.features.items()}
    assert stored == pytest.approx(expected, nan_ok=True)


async def test_qualified_fires_once_until_the_advisor_resets(runtime: Runtime, pm: Actor) -> None:
    await b.register(runtime, promote=True)
    await campaign_builders.add_profile(runtime, pm, lead_threshold=60)
    [prospect] = await campaign_builders.add_prospects(runtime, pm, 1)
    assert pm.pm_id is not None
    await interested_history(runtime, pm, prospect)
    first = await run_batch(runtime)
    assert first.qualified == (prospect,)

    [fired] = await qualified_events(runtime, prospect)
    assert fired.details["threshold"] == 60 and fired.details["score"] >= 60
    assert fired.details["model_version"] == 1 and len(fired.details["reasons"]) >= 1
    assert fired.campaign_id is not None  # the campaign of the reply that tipped it
    [entry] = await b.audit_actions(runtime, "lead.qualified")
    assert entry.actor == "worker:scoring" and entry.details["count"] == 1
    [record] = entry.details["leads"]
    assert record["prospect_id"] == str(prospect) and record["threshold"] == 60

    # More interest: the score stays above the threshold, but nothing fires again.
    more = [await b.reply(runtime, prospect, pm.pm_id, b.INTERESTED, at=b.T0 + timedelta(days=1))]
    await b.add_events(runtime, more)
    assert (await run_batch(runtime)).qualified == ()
    assert len(await qualified_events(runtime, prospect)) == 1

    async with runtime.sessions() as session, session.begin():
        await give_feedback(
            session, campaign_builders.principal(pm), prospect,
            FeedbackIn(label=FeedbackLabel.RESET), keyring=runtime.keyring, now=NOW,
        )  # fmt: skip
    state = await state_of(runtime, prospect)
    assert state is not None and state.qualified_at is None
    await b.add_events(runtime, b.contact(prospect, pm.pm_id, at=b.T0 + timedelta(days=2)))
    assert (await run_batch(runtime)).qualified == (prospect,)
    assert len(await qualified_events(runtime, prospect)) == 2
    assert len(await b.audit_actions(runtime, "lead.qualified")) == 2


async def test_a_crash_mid_batch_loses_nothing_and_applies_nothing_twice(
    runtime: Runtime, pm: Actor
) -> None:
    await b.register(runtime, promote=True)
    [prospect] = await campaign_builders.add_prospects(runtime, pm, 1)
    ids = await interested_history(runtime, pm, prospect)

    class Crash(Exception):
        pass

    # The worker dies after doing all the work of a batch but before its commit.
    with pytest.raises(Crash):
        async with runtime.sessions() as session, session.begin():
            result = await realtime.process_events(
                session, keyring=runtime.keyring, models=ModelCache(max_age=0), now=NOW,
                guard=GapGuard(timeout=0),
            )  # fmt: skip
            assert result.events == len(ids)
            raise Crash
    assert await state_of(runtime, prospect) is None
    async with runtime.sessions() as session:
        assert await repo.cursor_position(session, realtime.CURSOR) == 0

    # A new process (fresh caches) picks up where the last commit left off, in two batches.
    assert (await run_batch(runtime, ModelCache(max_age=0), batch_size=3)).events == 3
    assert (await run_batch(runtime, ModelCache(max_age=0), batch_size=3)).events == 2
    # Then its own "qualified" event, which changes no feature; then nothing.
    assert (await run_batch(runtime, ModelCache(max_age=0))).events == 1
    assert (await run_batch(runtime, ModelCache(max_age=0))).events == 0
    state = await state_of(runtime, prospect)
    assert state is not None and state.events_seen == 4 and state.last_event_id == ids[-1]
    [fired] = await qualified_events(runtime, prospect)
    async with runtime.sessions() as session:
        assert await repo.cursor_position(session, realtime.CURSOR) == fired.id > ids[-1]


async def test_without_a_champion_scores_stay_empty_until_one_is_promoted(
    runtime: Runtime, pm: Actor
) -> None:
    [prospect] = await campaign_builders.add_prospects(runtime, pm, 1)
    await interested_history(runtime, pm, prospect)
    models = ModelCache(max_age=0)
    assert (await run_batch(runtime, models)).scored == 0
    state = await state_of(runtime, prospect)
    assert state is not None and state.score is None and state.features["intent_interest"] == 1
    assert state.events_seen == 4

    first = await b.register(runtime, promote=True)
    async with runtime.sessions() as session, session.begin():
        rescored = await realtime.rescore_stale(session, models=models, now=NOW)
    assert rescored.scored == 1 and rescored.qualified == (prospect,)
    state = await state_of(runtime, prospect)
    assert state is not None and state.score is not None and state.model_version_id == first.id

    # A weaker champion takes over: every prospect is rescored by it, and nothing re-fires.
    second = await b.register(runtime, artifact=b.engagement_artifact(1, 0.0), promote=True)
    async with runtime.sessions() as session, session.begin():
        assert (await realtime.rescore_stale(session, models=models, now=NOW)).scored == 1
        assert (await realtime.rescore_stale(session, models=models, now=NOW)).scored == 0
    again = await state_of(runtime, prospect)
    assert again is not None and again.model_version_id == second.id
    assert again.score != state.score
    assert len(await qualified_events(runtime, prospect)) == 1


async def test_a_pm_scope_champion_overrides_the_global_one(runtime: Runtime, pm: Actor) -> None:
    other = await make_actor(runtime, Role.PM)
    assert pm.pm_id is not None and other.pm_id is not None
    general = await b.register(runtime, promote=True)
    special = await b.register(
        runtime, artifact=b.engagement_artifact(2), promote=True, scope=f"pm:{other.pm_id}"
    )
    [mine] = await campaign_builders.add_prospects(runtime, pm, 1)
    [theirs] = await campaign_builders.add_prospects(runtime, other, 1)
    await b.add_events(
        runtime, b.contact(mine, pm.pm_id, at=b.T0) + b.contact(theirs, other.pm_id, at=b.T0)
    )
    await drain(runtime)
    a, c = await state_of(runtime, mine), await state_of(runtime, theirs)
    assert a is not None and c is not None
    assert (a.model_version_id, c.model_version_id) == (general.id, special.id)


async def test_opted_out_prospects_keep_a_score_but_never_qualify(
    runtime: Runtime, pm: Actor
) -> None:
    await b.register(runtime, promote=True)
    [prospect] = await campaign_builders.add_prospects(runtime, pm, 1)
    async with runtime.sessions() as session, session.begin():
        (await session.get_one(Prospect, prospect)).opted_out = True
    await interested_history(runtime, pm, prospect)
    assert (await run_batch(runtime)).qualified == ()
    state = await state_of(runtime, prospect)
    assert state is not None and state.score is not None and state.score > 70


async def test_the_threshold_is_the_last_profile_the_pm_set(runtime: Runtime, pm: Actor) -> None:
    assert pm.pm_id is not None
    async with runtime.sessions() as session:
        assert await repo.thresholds(session, [pm.pm_id]) == {pm.pm_id: 70}
    first = await campaign_builders.add_profile(runtime, pm, lead_threshold=50)
    await campaign_builders.add_profile(runtime, pm, lead_threshold=85)
    async with runtime.sessions() as session:
        assert await repo.thresholds(session, [pm.pm_id]) == {pm.pm_id: 85}
    async with runtime.sessions() as session, session.begin():
        profile = await session.get_one(EngagementProfile, first)
        profile.lead_threshold = 55
    async with runtime.sessions() as session:
        assert await repo.thresholds(session, [pm.pm_id]) == {pm.pm_id: 55}


async def test_a_second_worker_finds_the_cursor_busy(runtime: Runtime, pm: Actor) -> None:
    if runtime.settings.is_sqlite:
        pytest.skip("SQLite has one writer at a time; the row lock is a PostgreSQL matter")
    assert (await run_batch(runtime)).events == 0  # the cursor row exists from here on
    [prospect] = await campaign_builders.add_prospects(runtime, pm, 1)
    await interested_history(runtime, pm, prospect)
    async with runtime.sessions() as holder, holder.begin():
        assert await repo.lock_cursor(holder, realtime.CURSOR, now=NOW) == 0
        assert (await run_batch(runtime)).busy
    assert (await run_batch(runtime)).events == 5


async def test_the_worker_job_consumes_events_then_rescores(runtime: Runtime, pm: Actor) -> None:
    assert JOBS["scoring"] is ScoringJob and JOBS["retraining"] is RetrainingJob
    [prospect] = await campaign_builders.add_prospects(runtime, pm, 1)
    await interested_history(runtime, pm, prospect)
    context = WorkerContext(runtime=runtime, owner="test", clock=lambda: NOW)
    scorer = BatchScorer(context, ScoringSettings(gap_timeout=0))
    assert await scorer.step() == 5  # events, no champion yet
    assert await scorer.step() == 0
    await b.register(runtime, promote=True)
    scorer.models = ModelCache(max_age=0)
    assert await scorer.step() == 1  # nothing new in the log: the stale score is filled in
    state = await state_of(runtime, prospect)
    assert state is not None and state.score is not None


async def test_retraining_is_off_unless_an_interval_is_set(runtime: Runtime) -> None:
    stop = asyncio.Event()
    context = WorkerContext(runtime=runtime, owner="test")
    task = asyncio.create_task(RetrainingJob(ScoringSettings()).run(context, stop))
    await asyncio.sleep(0.05)
    assert not task.done()
    stop.set()
    await asyncio.wait_for(task, timeout=5)


async def test_feedback_keeps_the_features_as_they_stand_when_given(
    runtime: Runtime, pm: Actor
) -> None:
    [prospect] = await campaign_builders.add_prospects(runtime, pm, 1)
    await interested_history(runtime, pm, prospect)
    await run_batch(runtime)
    later = NOW + timedelta(days=10)
    async with runtime.sessions() as session, session.begin():
        out = await give_feedback(
            session, campaign_builders.principal(pm), prospect,
            FeedbackIn(label=FeedbackLabel.CONVERTED, note="signed"), keyring=runtime.keyring,
            now=later,
        )  # fmt: skip
    async with runtime.sessions() as session:
        row = await session.get_one(LeadFeedback, out.id)
    sent_at = b.T0 + timedelta(minutes=1)
    assert row.features["days_since_last_contact"] == pytest.approx(
        (later - sent_at) / timedelta(days=1)
    )
    assert row.features["intent_interest"] == 1.0 and row.label is FeedbackLabel.CONVERTED
    assert row.note_enc is not None and b"signed" not in row.note_enc


async def test_erased_prospects_are_left_alone(runtime: Runtime, pm: Actor) -> None:
    gone, kept = await campaign_builders.add_prospects(runtime, pm, 2)
    await interested_history(runtime, pm, gone)
    await interested_history(runtime, pm, kept)
    models = ModelCache(max_age=0)
    await drain(runtime, models)
    async with runtime.sessions() as session, session.begin():
        await contacts_service.erase(
            session, campaign_builders.principal(pm), gone, keyring=runtime.keyring
        )
    champion = await b.register(runtime, promote=True)
    async with runtime.sessions() as session:
        stale = await repo.stale_states(session, scope_versions={None: champion.id or 0}, limit=9)
    assert stale == [kept]
    async with runtime.sessions() as session, session.begin():
        assert (await realtime.rescore_stale(session, models=models, now=NOW, limit=1)).scored == 1
        assert (await realtime.rescore_stale(session, models=models, now=NOW, limit=1)).scored == 0
    gone_state, kept_state = await state_of(runtime, gone), await state_of(runtime, kept)
    assert gone_state is not None and gone_state.score is None
    assert kept_state is not None and kept_state.score is not None
    # New events about an erased prospect change nothing either.
    assert pm.pm_id is not None
    await b.add_events(runtime, b.contact(gone, pm.pm_id, at=b.T0 + timedelta(days=1)))
    await drain(runtime, models)
    again = await state_of(runtime, gone)
    assert again is not None and again.events_seen == gone_state.events_seen
