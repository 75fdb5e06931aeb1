"""Launching a campaign under an experiment, on SQLite and PostgreSQL: arms from the
experiment's hash, the hold-out sent nothing but recorded, the remainder held, every
assignment in the table, and the same places after a relaunch."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select

from mcep.auth.models import Role
from mcep.campaigns import launch as launching
from mcep.campaigns.variants import ArmSettings, VariantPlan, WeightedVariant, assign_variant
from mcep.channels.base import Platform
from mcep.contacts.models import Channel
from mcep.dispatch.models import Event, Message
from mcep.errors import Conflict, ValidationFailed
from mcep.experiments.design import Cohort, ExperimentStatus
from mcep.runtime import Runtime
from tests.conftest import Actor, make_actor
from tests.integration.campaigns.builders import (
    add_campaign,
    add_device,
    add_prospects,
    add_template,
    launch_campaign,
    principal,
)
from tests.integration.experiments.builders import (
    LAUNCH,
    add_experiment,
    assignments,
    audit_entries,
    experiment,
    launch,
    messages,
)


async def _event_kinds(runtime: Runtime, campaign_id: uuid.UUID) -> dict[tuple[str, str], int]:
    async with runtime.sessions() as session:
        stmt = select(Event.kind, Event.details).where(Event.campaign_id == campaign_id)
        rows = (await session.execute(stmt)).all()
    return dict(Counter((kind, details.get("reason", "")) for kind, details in rows))


async def test_holdout_gets_nothing_and_every_place_is_recorded(
    runtime: Runtime, actors: dict[str, Actor]
) -> None:
    pm = actors["pm"]
    await add_device(runtime)
    prospects = await add_prospects(runtime, pm, 300)
    no_consent = await add_prospects(runtime, pm, 10, consents=())
    campaign_id, experiment_id = await add_experiment(
        runtime, pm, prospects + no_consent, holdout=0.2
    )
    campaign = await launch(runtime, pm, campaign_id)

    placed = {a.prospect_id: a for a in await assignments(runtime, experiment_id)}
    assert set(placed) == set(prospects)  # the ineligible are never assigned
    holdout = {pid for pid, a in placed.items() if a.cohort is Cohort.HOLDOUT}
    assert 35 <= len(holdout) <= 85  # 20% of 300
    assert all(placed[p].arm is None for p in holdout)

    sent = await messages(runtime, campaign_id)
    assert {m.prospect_id for m in sent} == set(prospects) - holdout
    assert {m.prospect_id: m.variant for m in sent} == {
        pid: a.arm for pid, a in placed.items() if a.cohort is Cohort.TEST
    }
    plan = VariantPlan(str(experiment_id), (ArmSettings("a"), ArmSettings("b")), holdout=0.2)
    for pid in prospects:
        choice = plan.choose(pid)
        assert placed[pid].cohort is choice.cohort
        assert placed[pid].arm == (choice.arm.name if choice.arm else None)

    result = campaign.launch_result
    assert result["skip_reasons"] == {"holdout": len(holdout), "no_consent": 10}
    assert result["queued"] == len(prospects) - len(holdout)
    kinds = await _event_kinds(runtime, campaign_id)
    assert kinds[("skipped", "holdout")] == len(holdout)
    assert kinds[("queued", "")] == len(sent)

    started = await experiment(runtime, experiment_id)
    assert started.status is ExperimentStatus.RUNNING and started.launched_at == LAUNCH
    [entry] = await audit_entries(runtime, "experiment.started", experiment_id)
    assert entry.details["groups"]["holdout"] == len(holdout)


async def test_assignment_is_stable_across_relaunches(
    runtime: Runtime, actors: dict[str, Actor]
) -> None:
    pm = actors["pm"]
    await add_device(runtime)
    prospects = await add_prospects(runtime, pm, 120)
    campaign_id, experiment_id = await add_experiment(runtime, pm, prospects, holdout=0.1)

    # A launch whose transaction is lost (a crash, a failed commit) ...
    async with runtime.sessions() as session:
        await launching.launch(
            session, principal(pm), campaign_id, keyring=runtime.keyring, now=LAUNCH
        )
        first = {(m.prospect_id, m.variant) for m in (await session.scalars(select(Message))).all()}
        await session.rollback()
    assert await assignments(runtime, experiment_id) == []
    # ... and the relaunch, later, with the audience listed in another order.
    await launch(runtime, pm, campaign_id)
    again = {(m.prospect_id, m.variant) for m in await messages(runtime, campaign_id)}
    assert again == first and len(again) > 90


async def test_arms_bring_their_send_offset_and_channel_preference(
    runtime: Runtime, actors: dict[str, Actor]
) -> None:
    pm = actors["pm"]
    await add_device(runtime, Platform.TELEGRAM)
    await add_device(runtime, Platform.WHATSAPP)
    prospects = await add_prospects(
        runtime, pm, 60, phone=True, consents=("whatsapp", "telegram"), timezone="UTC"
    )
    a, b = await add_template(runtime, pm, body="A"), await add_template(runtime, pm, body="B")
    variants = [
        {"name": "a", "template_id": str(a)},
        {
            "name": "b",
            "template_id": str(b),
            "send_offset_minutes": 90,
            "channel_order": ["telegram"],
        },
    ]
    campaign_id, _ = await add_experiment(runtime, pm, prospects, variants=variants)
    await launch(runtime, pm, campaign_id)
    by_arm: dict[str, set[tuple[Channel, object]]] = {}
    for m in await messages(runtime, campaign_id):
        by_arm.setdefault(m.variant, set()).add((m.channel, m.next_attempt_at))
    assert by_arm["a"] == {(Channel.WHATSAPP, LAUNCH)}  # the profile's order: WhatsApp first
    assert by_arm["b"] == {(Channel.TELEGRAM, LAUNCH + timedelta(minutes=90))}


async def test_test_then_send_queues_the_test_cells_and_holds_the_rest(
    runtime: Runtime, actors: dict[str, Actor]
) -> None:
    pm = actors["pm"]
    await add_device(runtime)
    prospects = await add_prospects(runtime, pm, 200)
    campaign_id, experiment_id = await add_experiment(
        runtime, pm, prospects, mode="test_then_send", test_fraction=0.3, deadline_hours=24
    )
    campaign = await launch(runtime, pm, campaign_id)

    placed = await assignments(runtime, experiment_id)
    held = {a.prospect_id for a in placed if a.cohort is Cohort.REMAINDER}
    test = {a.prospect_id for a in placed if a.cohort is Cohort.TEST}
    assert held | test == set(prospects) and 30 <= len(test) <= 90
    assert {m.prospect_id for m in await messages(runtime, campaign_id)} == test
    assert campaign.launch_result["skip_reasons"] == {"held_for_winner": len(held)}
    # Held is not skipped: no event until the remainder is queued with the winner.
    assert set(await _event_kinds(runtime, campaign_id)) == {("queued", "")}
    started = await experiment(runtime, experiment_id)
    assert started.deadline == LAUNCH + timedelta(hours=24)


async def test_a_held_recipient_missing_any_arms_variable_fails_the_launch(
    runtime: Runtime, actors: dict[str, Actor]
) -> None:
    pm = actors["pm"]
    await add_device(runtime)
    prospects = await add_prospects(runtime, pm, 40, attributes={"segment": "hnw"})
    campaign_id, experiment_id = await add_experiment(
        runtime,
        pm,
        prospects,
        bodies=["Hello {{ first_name }}", "Your AUM: {{ attributes.aum }}"],
        mode="test_then_send",
        test_fraction=0.01,  # nearly everyone is held, so the check must cover them
        deadline_hours=24,
    )
    with pytest.raises(ValidationFailed) as info:
        await launch(runtime, pm, campaign_id)
    problem = info.value.problems[0]
    assert problem.field == "variants.b.body" and "'attributes.aum'" in problem.message
    assert await messages(runtime, campaign_id) == []
    assert (await experiment(runtime, experiment_id)).status is ExperimentStatus.DRAFT


async def test_a_campaign_without_experiment_still_hashes_on_its_own_id(
    runtime: Runtime, actors: dict[str, Actor]
) -> None:
    other = await make_actor(runtime, Role.PM)
    await add_device(runtime)
    prospects = await add_prospects(runtime, other, 50)
    a, b = (
        await add_template(runtime, other, body="A"),
        await add_template(runtime, other, body="B"),
    )
    variants = [{"name": "a", "template_id": str(a)}, {"name": "b", "template_id": str(b)}]
    campaign_id = await add_campaign(runtime, other, prospect_ids=prospects, variants=variants)
    await launch_campaign(runtime, other, campaign_id)
    arms = [WeightedVariant("a"), WeightedVariant("b")]
    for m in await messages(runtime, campaign_id):
        assert m.variant == assign_variant(campaign_id, m.prospect_id, arms)


async def test_a_deadline_already_past_at_launch_refuses_the_launch(
    runtime: Runtime, actors: dict[str, Actor]
) -> None:
    pm = actors["pm"]
    await add_device(runtime)
    prospects = await add_prospects(runtime, pm, 10)
    deadline = LAUNCH + timedelta(hours=1)
    campaign_id, experiment_id = await add_experiment(
        runtime,
        pm,
        prospects,
        mode="test_then_send",
        test_fraction=0.5,
        deadline=deadline.isoformat(),
    )
    with pytest.raises(Conflict, match="deadline"):
        await launch_campaign(runtime, pm, campaign_id, now=deadline + timedelta(minutes=1))
    assert await messages(runtime, campaign_id) == []
    assert (await experiment(runtime, experiment_id)).status is ExperimentStatus.DRAFT
