"""The worker's look at a running experiment: decide a test-then-send experiment and release
its remainder with the chosen arm, or release a Thompson experiment's next batch.

Flushes; never commits: the job's wrapper owns each experiment's transaction. Acting on a
decision is exactly-once: the experiment row is locked (SKIP LOCKED) and then moved out of
``running`` by a guarded UPDATE before anything is released, so a second look, by this
worker or another, changes nothing. Decisions and batches are audited with their numbers.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession

from mcep.campaigns.models import Campaign, CampaignStatus
from mcep.campaigns.variants import ArmSettings, VariantPlan
from mcep.contacts.crypto import Keyring
from mcep.experiments import repository, rollout
from mcep.experiments.assignment import thompson_shares, unit_hash
from mcep.experiments.decision import Continue, decide
from mcep.experiments.design import ExperimentDesign, ExperimentStatus, Mode
from mcep.experiments.launching import arm_settings, plan_of
from mcep.experiments.models import Experiment
from mcep.experiments.results import ExperimentCounts, decision_view, tallies
from mcep.experiments.service import DEFAULT_BATCH_MINUTES, audit_experiment, design_of
from mcep.experiments.stats import Counts

WORKER = "worker:experiments"
_BATCH_SALT = "batch"


async def evaluate(
    session: AsyncSession, experiment_id: uuid.UUID, *, keyring: Keyring, now: datetime
) -> bool:
    """One look at a running experiment; ``True`` when it changed anything.

    Test-then-send: decide, and on a winner (or at the deadline) record the decision and
    release the remainder with the chosen arm. Thompson: release the next batch when due.
    A second call with nothing new changes nothing.
    """
    experiment = await repository.lock_running(session, experiment_id)
    if experiment is None:
        return False
    campaign = await session.get(Campaign, experiment.campaign_id)
    assert campaign is not None  # the experiment is deleted with its campaign
    if campaign.status is CampaignStatus.CANCELLED:
        return await _cancel(session, experiment, now=now)
    if experiment.mode is Mode.TEST_THEN_SEND:
        return await _decide(session, experiment, campaign, keyring=keyring, now=now)
    if experiment.mode is Mode.THOMPSON:
        return await _thompson_batch(session, experiment, campaign, keyring=keyring, now=now)
    return False


async def _cancel(session: AsyncSession, experiment: Experiment, *, now: datetime) -> bool:
    if not await repository.claim_status(
        session, experiment.id, to=ExperimentStatus.CANCELLED, values={"updated_at": now}
    ):
        return False
    held = await repository.unreleased(session, experiment.id)
    await repository.mark_released(
        session, experiment.id, dict.fromkeys(held, (None, "campaign_cancelled")), now=now
    )
    await audit_experiment(session, WORKER, "experiment.cancelled", experiment, held_back=len(held))
    return True


async def _decide(
    session: AsyncSession,
    experiment: Experiment,
    campaign: Campaign,
    *,
    keyring: Keyring,
    now: datetime,
) -> bool:
    design = design_of(experiment)
    deadline = experiment.deadline or now
    counts = await repository.group_counts(session, experiment, now=now)
    decision = decide(tallies(design, counts), design.split_plan(deadline), now=now)
    if isinstance(decision, Continue):
        return False
    values = {"winner": decision.arm, "decided_at": now, "updated_at": now}
    if not await repository.claim_status(
        session, experiment.id, to=ExperimentStatus.COMPLETED, values=values
    ):
        return False
    view = decision_view(decision, design, recorded=True, decided_at=now, deadline=deadline)
    winner = next(a for a in experiment.arms if a.name == decision.arm)
    released = await rollout.release(
        session,
        campaign,
        await repository.unreleased(session, experiment.id),
        experiment_id=experiment.id,
        variants=VariantPlan.only(arm_settings(winner), key=str(experiment.id)),
        keyring=keyring,
        now=now,
    )
    record = {"decision": view.model_dump(mode="json"), "release": released.as_json()}
    experiment.decision = record
    await session.flush()
    await audit_experiment(
        session,
        WORKER,
        "experiment.decided",
        experiment,
        metric=design.metric.value,
        alpha=design.alpha,
        max_opt_out_rate=design.max_opt_out_rate,
        **record,
    )
    return True


# --- Thompson batches ----------------------------------------------------------------------


def batch_seed(experiment_id: uuid.UUID, number: int) -> int:
    """A seed fixed by the experiment and the batch, so a retried batch draws the same."""
    digest = hashlib.sha256(f"{experiment_id}:{number}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def thompson_plan(
    experiment: Experiment,
    design: ExperimentDesign,
    counts: ExperimentCounts,
    *,
    number: int,
) -> VariantPlan:
    """Batch ``number``'s arms, weighted by each arm's posterior chance of being best."""
    pooled = []
    for name, tally in zip(design.arms, tallies(design, counts), strict=True):
        released = counts.remainder.get(name)
        sent = tally.sent + (released.sent if released else 0)
        hits = tally.replies
        if released is not None:
            won = released.successes(design.metric)
            hits += won if design.metric.higher_is_better else released.sent - won
        pooled.append(Counts(hits, sent) if sent else None)
    shares = thompson_shares(
        pooled,
        min_share=experiment.min_share or 0.0,
        rng=np.random.default_rng(batch_seed(experiment.id, number)),
    )
    arms = tuple(
        ArmSettings(s.name, share, s.send_offset, s.channel_order)
        for s, share in zip(plan_of(experiment).arms, shares, strict=True)
    )
    return VariantPlan(f"{experiment.id}:{number}", arms, experiment_id=experiment.id)


async def _thompson_batch(
    session: AsyncSession,
    experiment: Experiment,
    campaign: Campaign,
    *,
    keyring: Keyring,
    now: datetime,
) -> bool:
    batches: list[dict[str, Any]] = list(experiment.decision.get("batches", []))
    last = datetime.fromisoformat(batches[-1]["at"]) if batches else experiment.launched_at
    assert last is not None
    if now < last + timedelta(minutes=experiment.batch_minutes or DEFAULT_BATCH_MINUTES):
        return False
    held = await repository.unreleased(session, experiment.id)
    if not held:
        values = {"decided_at": now, "updated_at": now}
        done = await repository.claim_status(
            session, experiment.id, to=ExperimentStatus.COMPLETED, values=values
        )
        if done:
            await audit_experiment(
                session, WORKER, "experiment.completed", experiment, batches=len(batches)
            )
        return done
    design = design_of(experiment)
    counts = await repository.group_counts(session, experiment, now=now)
    number = len(batches) + 1
    variants = thompson_plan(experiment, design, counts, number=number)
    size = max(1, sum(g.assigned for g in counts.test.values()))
    batch = sorted(held, key=lambda pid: unit_hash(_BATCH_SALT, str(experiment.id), str(pid)))
    released = await rollout.release(
        session,
        campaign,
        batch[:size],
        experiment_id=experiment.id,
        variants=variants,
        keyring=keyring,
        now=now,
    )
    shares = {a.name: round(a.weight, 6) for a in variants.arms}
    entry = {"number": number, "at": now.isoformat(), "shares": shares, **released.as_json()}
    experiment.decision = {"batches": [*batches, entry]}
    await session.flush()
    await audit_experiment(session, WORKER, "experiment.batch_released", experiment, **entry)
    return True
