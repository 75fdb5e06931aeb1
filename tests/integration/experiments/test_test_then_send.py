"""Test-then-send end to end on SQLite and PostgreSQL, driven by simulated outcomes.

The test cells' outcomes are drawn with a seed (true reply rates 30% and 60%) and written to
the event log in bulk, ten messages per arm per look; the worker job looks after each batch
at an injected time. What it decides must be what the pure decision says on the same counts;
then the remainder goes out with the chosen arm, exactly once, and the decision with its
numbers is in the audit chain.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import select

from mcep.audit import service as audit
from mcep.campaigns.models import Campaign, CampaignStatus
from mcep.contacts.models import Prospect
from mcep.dispatch.content import open_content
from mcep.dispatch.models import Event, EventKind, Message
from mcep.experiments import service
from mcep.experiments.decision import ArmTally, Continue, Decision, Winner, decide
from mcep.experiments.design import Cohort, ExperimentStatus
from mcep.runtime import Runtime
from tests.conftest import Actor
from tests.integration.campaigns.builders import add_device, add_prospects, principal
from tests.integration.experiments.builders import (
    LAUNCH,
    add_experiment,
    assignments,
    audit_entries,
    experiment,
    insert_events,
    launch,
    messages,
    outcome_events,
    run_job,
)

RATES = {"a": 0.3, "b": 0.6}  # control "a" replies 30%, variant "b" 60%
CELL = 100  # the most messages per arm the test may use
LOOK = 10  # messages per arm between looks
DEADLINE_HOURS = 48
EARLY_WIN_SEED = 0  # its draws separate the arms after 40 messages per arm
NO_EARLY_WIN_SEED = 11  # its draws never separate them within 100: the deadline decides


@dataclass
class Drive:
    """What happened: the look (messages per arm) at which the job acted, if any."""

    decided_at_sent: int | None
    decided_at: datetime | None
    expected: list[Decision]


def _at(look: int) -> datetime:
    return LAUNCH + timedelta(hours=look)


async def _test_cells(runtime: Runtime, campaign_id: uuid.UUID) -> dict[str, list[Message]]:
    cells: dict[str, list[Message]] = {}
    for m in await messages(runtime, campaign_id):
        cells.setdefault(m.variant, []).append(m)
    assert all(len(cell) >= CELL for cell in cells.values()), "audience too small for the test"
    return cells


async def drive(
    runtime: Runtime, experiment_id: uuid.UUID, campaign_id: uuid.UUID, *, seed: int
) -> Drive:
    """Send ten more per arm, with seeded replies, and run the job; until it acts or 100."""
    cells = await _test_cells(runtime, campaign_id)
    rng = np.random.default_rng(seed)
    replies = {arm: rng.random(CELL) < rate for arm, rate in RATES.items()}
    plan = service.design_of(await experiment(runtime, experiment_id)).split_plan(
        LAUNCH + timedelta(hours=DEADLINE_HOURS)
    )
    expected: list[Decision] = []
    for look in range(1, CELL // LOOK + 1):
        now, sent = _at(look), look * LOOK
        batch = {arm: cells[arm][sent - LOOK : sent] for arm in RATES}
        rows = []
        for arm, chunk in batch.items():
            rows += outcome_events(chunk, kind=EventKind.SENT, at=now - timedelta(minutes=5))
            hits = [m for i, m in enumerate(chunk, start=sent - LOOK) if replies[arm][i]]
            rows += outcome_events(hits, kind=EventKind.REPLIED, at=now - timedelta(minutes=1))
        await insert_events(runtime, rows)
        tallies = [ArmTally(arm, sent, int(replies[arm][:sent].sum())) for arm in RATES]
        expected.append(decide(tallies, plan, now=now))
        changed = await run_job(runtime, now=now)
        assert bool(changed) != isinstance(expected[-1], Continue), f"look {look}"
        if changed:
            return Drive(sent, now, expected)
    return Drive(None, None, expected)


async def _setup(runtime: Runtime, pm: Actor, audience: int = 600) -> tuple[uuid.UUID, uuid.UUID]:
    await add_device(runtime)
    prospects = await add_prospects(runtime, pm, audience)
    campaign_id, experiment_id = await add_experiment(
        runtime,
        pm,
        prospects,
        mode="test_then_send",
        test_fraction=0.5,  # about 150 per arm, so 100 per arm are there to be used
        deadline_hours=DEADLINE_HOURS,
        guardrail={"max_rate": 0.05},
    )
    await launch(runtime, pm, campaign_id)
    return campaign_id, experiment_id


async def _released_bodies(runtime: Runtime, released: list[Message]) -> set[str]:
    bodies = set()
    async with runtime.sessions() as session:
        for m in released[:5]:
            prospect = await session.get(Prospect, m.prospect_id)
            assert prospect is not None and prospect.wrapped_key is not None
            assert m.content_enc is not None
            key = runtime.keyring.unwrap(prospect.wrapped_key)
            bodies.add(open_content(m.content_enc, key=key, message_id=m.id).body.split()[1])
    return bodies


async def _check_released_once(
    runtime: Runtime,
    campaign_id: uuid.UUID,
    experiment_id: uuid.UUID,
    *,
    arm: str,
    at: datetime,
) -> None:
    placed = await assignments(runtime, experiment_id)
    held = {a.prospect_id for a in placed if a.cohort is Cohort.REMAINDER}
    assert all(
        a.arm == arm and a.outcome == "queued" and a.released_at == at
        for a in placed
        if a.cohort is Cohort.REMAINDER
    )
    every = await messages(runtime, campaign_id)
    released = [m for m in every if m.prospect_id in held]
    assert len(released) == len(held) > 250  # each held prospect exactly once
    assert {m.variant for m in released} == {arm}
    assert await _released_bodies(runtime, released) == {arm}  # rendered with its template
    async with runtime.sessions() as session:
        queued = await session.scalars(
            select(Event.variant).where(
                Event.campaign_id == campaign_id,
                Event.kind == EventKind.QUEUED,
                Event.prospect_id.in_(held),
            )
        )
        assert Counter(queued.all()) == {arm: len(held)}

    # Looking again, now or later, changes nothing.
    assert await run_job(runtime, now=at) == 0
    assert await run_job(runtime, now=at + timedelta(days=3)) == 0
    assert len(await messages(runtime, campaign_id)) == len(every)
    assert len(await audit_entries(runtime, "experiment.decided", experiment_id)) == 1


async def test_a_clear_winner_is_declared_early_and_gets_the_remainder_once(
    runtime: Runtime, actors: dict[str, Actor]
) -> None:
    pm = actors["pm"]
    campaign_id, experiment_id = await _setup(runtime, pm)
    async with runtime.sessions() as session:
        before = await service.results(session, principal(pm), experiment_id, now=LAUNCH)
    assert before.decision is not None and before.decision.state == "testing"
    assert not before.decision.recorded
    assert before.decision.deadline == LAUNCH + timedelta(hours=DEADLINE_HOURS)
    result = await drive(runtime, experiment_id, campaign_id, seed=EARLY_WIN_SEED)

    assert result.decided_at_sent is not None and result.decided_at_sent <= CELL
    decision = result.expected[-1]
    assert isinstance(decision, Winner) and decision.arm == "b"
    done = await experiment(runtime, experiment_id)
    assert done.status is ExperimentStatus.COMPLETED and done.winner == "b"
    assert done.decided_at == result.decided_at
    await _check_released_once(
        runtime, campaign_id, experiment_id, arm="b", at=result.decided_at or LAUNCH
    )

    [entry] = await audit_entries(runtime, "experiment.decided", experiment_id)
    recorded = entry.details["decision"]
    assert (recorded["state"], recorded["arm"], recorded["reason"]) == (
        "winner",
        "b",
        "significant",
    )
    numbers = {e["name"]: e for e in recorded["evidence"]}
    for evidence in decision.evidence:
        assert numbers[evidence.name]["sent"] == evidence.sent == result.decided_at_sent
        assert numbers[evidence.name]["successes"] == evidence.replies
        assert numbers[evidence.name]["p_value"] == evidence.p_value
    assert entry.details["release"]["by_arm"] == {"b": entry.details["release"]["queued"]}
    async with runtime.sessions() as session:
        assert (await audit.verify(session)).ok

        shown = await service.results(session, principal(pm), experiment_id, now=LAUNCH)
    assert shown.decision is not None and shown.decision.recorded
    assert shown.decision.arm == "b" and shown.rollout is not None
    assert shown.rollout.by_arm == {"b": shown.rollout.released} and shown.rollout.released > 250


async def test_without_a_winner_the_deadline_sends_the_remainder_to_control(
    runtime: Runtime, actors: dict[str, Actor]
) -> None:
    pm = actors["pm"]
    campaign_id, experiment_id = await _setup(runtime, pm)
    result = await drive(runtime, experiment_id, campaign_id, seed=NO_EARLY_WIN_SEED)
    assert result.decided_at_sent is None  # 100 per arm and still no separation
    # Meanwhile dispatch completed the campaign: every test message was done.
    async with runtime.sessions() as session, session.begin():
        campaign = await session.get(Campaign, campaign_id)
        assert campaign is not None
        campaign.status = CampaignStatus.COMPLETED
    deadline = LAUNCH + timedelta(hours=DEADLINE_HOURS)
    assert await run_job(runtime, now=deadline - timedelta(seconds=1)) == 0
    assert await run_job(runtime, now=deadline) == 1

    done = await experiment(runtime, experiment_id)
    assert done.status is ExperimentStatus.COMPLETED and done.winner == "a"
    assert done.decision["decision"]["state"] == "no_winner"
    assert done.decision["decision"]["reason"] == "deadline"
    assert done.decision["release"]["campaign_reopened"] is True
    async with runtime.sessions() as session:
        reopened = await session.get(Campaign, campaign_id)
        assert reopened is not None and reopened.status is CampaignStatus.RUNNING
    await _check_released_once(runtime, campaign_id, experiment_id, arm="a", at=deadline)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_right_winner_within_100_per_arm_in_most_seeded_runs(
    runtime: Runtime, actors: dict[str, Actor]
) -> None:
    """Twenty seeded campaigns over the same prospects: the job must name "b" within 100
    messages per arm in at least 80% of them (the pure simulation's rate is about 90%)."""
    pm = actors["pm"]
    await add_device(runtime)
    prospects = await add_prospects(runtime, pm, 340)
    used, wins = [], 0
    for seed in range(20):
        campaign_id, experiment_id = await add_experiment(
            runtime,
            pm,
            prospects,
            mode="test_then_send",
            test_fraction=0.9,
            deadline_hours=DEADLINE_HOURS,
        )
        await launch(runtime, pm, campaign_id)
        result = await drive(runtime, experiment_id, campaign_id, seed=seed)
        if result.decided_at_sent is not None:
            used.append(result.decided_at_sent)
            wins += (await experiment(runtime, experiment_id)).winner == "b"
    assert wins / 20 >= 0.8
    assert np.mean(used) < 80
