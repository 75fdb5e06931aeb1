"""Counts from the event log on SQLite and PostgreSQL, a cancelled campaign's experiment, and
Thompson batches."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import numpy as np

from mcep.dispatch.models import EventKind
from mcep.experiments import repository, service
from mcep.experiments.design import Cohort, ExperimentStatus
from mcep.experiments.results import GroupCounts, build_results
from mcep.experiments.tasks import ExperimentsJob
from mcep.runtime import Runtime
from mcep.worker.base import WorkerContext
from mcep.worker.jobs import JOBS
from tests.conftest import Actor
from tests.integration.campaigns.builders import add_device, add_prospects, change, principal
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

LATER = LAUNCH + timedelta(hours=2)


async def test_counts_take_each_outcome_once_and_only_where_it_belongs(
    runtime: Runtime, actors: dict[str, Actor]
) -> None:
    pm = actors["pm"]
    await add_device(runtime)
    prospects = await add_prospects(runtime, pm, 120)
    campaign_id, experiment_id = await add_experiment(runtime, pm, prospects, holdout=0.3)
    other_campaign, _ = await add_experiment(runtime, pm, prospects)
    await launch(runtime, pm, campaign_id)
    await launch(runtime, pm, other_campaign)
    mine = await messages(runtime, campaign_id)
    theirs = {m.prospect_id: m for m in await messages(runtime, other_campaign)}
    a = [m for m in mine if m.variant == "a"]
    b = [m for m in mine if m.variant == "b"]
    unsent, a = a[:2], a[2:]
    holdout = [p.prospect_id for p in await assignments(runtime, experiment_id)]
    holdout = [pid for pid in holdout if pid not in {m.prospect_id for m in mine}]
    assert len(holdout) >= 10

    at = LAUNCH + timedelta(minutes=30)
    rows = outcome_events(a + b, kind=EventKind.SENT, at=at)
    rows += outcome_events(a[:5] + a[:5] + b[:9], kind=EventKind.REPLIED, at=at)  # twice: once
    rows += outcome_events(b[:20], kind=EventKind.READ, at=at)
    rows += outcome_events(b[9:12], kind=EventKind.OPTED_OUT, at=at, campaign=False)
    rows += outcome_events(a[5:6], kind="qualified", at=at, campaign=False)
    rows += outcome_events(unsent, kind=EventKind.OPTED_OUT, at=at, campaign=False)  # not sent
    rows += outcome_events([theirs[m.prospect_id] for m in a[6:10]], kind=EventKind.REPLIED, at=at)
    rows += outcome_events(b[12:15], kind=EventKind.REPLIED, at=LATER + timedelta(seconds=1))
    rows += outcome_events(
        [theirs[pid] for pid in holdout[:3]], kind=EventKind.REPLIED, at=at
    )  # the hold-out's replies count whatever prompted them
    rows += outcome_events([theirs[holdout[3]]], kind=EventKind.OPTED_OUT, at=at, campaign=False)
    await insert_events(runtime, rows)

    async with runtime.sessions() as session:
        running = await repository.get_owned(session, principal(pm), experiment_id)
        counts = await repository.group_counts(session, running, now=LATER)
        shown = await service.results(session, principal(pm), experiment_id, now=LATER)
        design = service.design_of(running)
    assert counts.test == {
        "a": GroupCounts(assigned=len(a) + 2, sent=len(a), replied=5, qualified=1),
        "b": GroupCounts(assigned=len(b), sent=len(b), replied=9, read=20, opted_out=3),
    }
    assert counts.holdout == GroupCounts(assigned=len(holdout), replied=3, opted_out=1)
    expected = build_results(
        design,
        counts,
        experiment_id=experiment_id,
        status=ExperimentStatus.RUNNING,
        as_of=LATER,
    )
    assert shown == expected


async def test_cancelling_the_campaign_ends_the_experiment_and_releases_nothing(
    runtime: Runtime, actors: dict[str, Actor]
) -> None:
    pm = actors["pm"]
    await add_device(runtime)
    prospects = await add_prospects(runtime, pm, 60)
    campaign_id, experiment_id = await add_experiment(
        runtime, pm, prospects, mode="test_then_send", test_fraction=0.3, deadline_hours=1
    )
    await launch(runtime, pm, campaign_id)
    queued = len(await messages(runtime, campaign_id))
    await change(runtime, pm, campaign_id, "cancel")

    # The registered job, at its context's clock.
    job = JOBS["experiments"]()
    assert isinstance(job, ExperimentsJob)
    context = WorkerContext(runtime=runtime, owner="test", clock=lambda: LATER)
    assert await job.step(context) == 1
    assert await job.step(context) == 0
    assert (await experiment(runtime, experiment_id)).status is ExperimentStatus.CANCELLED
    held = [a for a in await assignments(runtime, experiment_id) if a.cohort is Cohort.REMAINDER]
    assert held and {a.outcome for a in held} == {"campaign_cancelled"}
    assert len(await messages(runtime, campaign_id)) == queued
    assert len(await audit_entries(runtime, "experiment.cancelled", experiment_id)) == 1


async def test_thompson_batches_favour_the_better_arm_and_drain_the_remainder(
    runtime: Runtime, actors: dict[str, Actor]
) -> None:
    pm = actors["pm"]
    await add_device(runtime)
    prospects = await add_prospects(runtime, pm, 150)
    campaign_id, experiment_id = await add_experiment(
        runtime,
        pm,
        prospects,
        mode="thompson",
        test_fraction=0.3,
        min_share=0.1,
        batch_minutes=60,
    )
    await launch(runtime, pm, campaign_id)
    test = await messages(runtime, campaign_id)
    rng = np.random.default_rng(3)
    rows = outcome_events(test, kind=EventKind.SENT, at=LAUNCH + timedelta(minutes=5))
    good = [m for m in test if rng.random() < (0.8 if m.variant == "b" else 0.1)]
    rows += outcome_events(good, kind=EventKind.REPLIED, at=LAUNCH + timedelta(minutes=10))
    await insert_events(runtime, rows)

    assert await run_job(runtime, now=LAUNCH + timedelta(minutes=59)) == 0  # not due yet
    first = LAUNCH + timedelta(hours=1)
    assert await run_job(runtime, now=first) == 1
    assert await run_job(runtime, now=first) == 0  # the same look twice: one batch
    batches = (await experiment(runtime, experiment_id)).decision["batches"]
    assert len(batches) == 1 and batches[0]["shares"]["b"] > 0.8
    assert batches[0]["shares"]["a"] >= 0.1  # the floor keeps the worse arm learning
    released = {m.prospect_id: m.variant for m in await messages(runtime, campaign_id)}
    batch = {pid: arm for pid, arm in released.items() if pid not in {m.prospect_id for m in test}}
    assert len(batch) == len(test) and Counter(batch.values())["b"] > len(batch) / 2

    now = first
    while (await experiment(runtime, experiment_id)).status is ExperimentStatus.RUNNING:
        now += timedelta(hours=1)
        assert await run_job(runtime, now=now) == 1
    placed = await assignments(runtime, experiment_id)
    assert all(a.outcome == "queued" and a.arm for a in placed if a.cohort is Cohort.REMAINDER)
    assert len(await messages(runtime, campaign_id)) == len(placed) == len(prospects)
    assert len(await audit_entries(runtime, "experiment.batch_released", experiment_id)) >= 2
