"""Cohorts and arms of a design, and the variant plan a launch follows."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from mcep.campaigns.variants import (
    ArmSettings,
    ArmSkip,
    VariantPlan,
    WeightedVariant,
    assign_variant,
)
from mcep.contacts.models import Channel
from mcep.experiments.assignment import Arm, assign
from mcep.experiments.decision import ArmTally, Continue, decide
from mcep.experiments.design import Cohort, ExperimentDesign, Mode, allocate

EXPERIMENT = "3f1c0d6e-8a55-4a0e-9d7e-2f0a9b1c7d42"
PROSPECTS = [str(uuid.UUID(int=i * 7919 + 17)) for i in range(20_000)]
ARMS = [Arm("a"), Arm("b", 3.0)]


def test_cohorts_take_their_shares_and_arms_split_the_test_by_weight() -> None:
    places = [allocate(EXPERIMENT, p, ARMS, holdout=0.1, test_fraction=0.25) for p in PROSPECTS]
    cohorts = Counter(a.cohort for a in places)
    n = len(PROSPECTS)
    assert cohorts[Cohort.HOLDOUT] / n == pytest.approx(0.1, abs=0.01)
    assert cohorts[Cohort.TEST] / n == pytest.approx(0.9 * 0.25, abs=0.01)
    assert cohorts[Cohort.REMAINDER] / n == pytest.approx(0.9 * 0.75, abs=0.01)
    arms = Counter(a.arm for a in places if a.cohort is Cohort.TEST)
    assert arms["b"] / (arms["a"] + arms["b"]) == pytest.approx(0.75, abs=0.02)
    assert all(a.arm is None for a in places if a.cohort is not Cohort.TEST)


def test_the_test_fraction_moves_people_between_test_and_remainder_without_reshuffling() -> None:
    small = [allocate(EXPERIMENT, p, ARMS, test_fraction=0.2) for p in PROSPECTS[:3000]]
    large = [allocate(EXPERIMENT, p, ARMS, test_fraction=0.6) for p in PROSPECTS[:3000]]
    for before, after in zip(small, large, strict=True):
        if before.cohort is Cohort.TEST:
            assert after == before  # nobody in the smaller test changes arm or cohort
    for p, place in zip(PROSPECTS[:3000], large, strict=True):
        if place.arm is not None:
            assert place.arm == assign(EXPERIMENT, p, ARMS).arm


def test_groups_shares_sum_to_one_and_name_every_group() -> None:
    design = ExperimentDesign(
        arms=("a", "b", "c"),
        weights=(2.0, 1.0, 1.0),
        holdout=0.1,
        mode=Mode.TEST_THEN_SEND,
        test_fraction=0.2,
    )
    shares = dict(design.groups())
    assert list(shares) == ["a", "b", "c", "holdout", "remainder"]
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["a"] == pytest.approx(0.9 * 0.2 * 0.5)
    fixed = ExperimentDesign(arms=("a", "b"), weights=(1.0, 1.0))
    assert dict(fixed.groups()) == {"a": 0.5, "b": 0.5}
    with pytest.raises(ValueError):
        ExperimentDesign(arms=("a", "a"), weights=(1.0, 1.0))
    with pytest.raises(ValueError):
        ExperimentDesign(arms=("a", "b"), weights=(1.0, 0.0))


def test_split_plan_ends_only_at_significance_or_the_deadline() -> None:
    deadline = datetime(2026, 3, 4, tzinfo=UTC)
    plan = ExperimentDesign(arms=("a", "b"), weights=(1.0, 1.0)).split_plan(deadline)
    even = [ArmTally("a", 100, 30), ArmTally("b", 100, 31)]
    # Every test message sent, replies still coming in: keep looking until the deadline.
    assert isinstance(decide(even, plan, now=deadline - timedelta(seconds=1)), Continue)
    assert decide(even, plan, now=deadline).arm == "a"  # type: ignore[union-attr]
    assert plan.max_opt_out_rate == 1.0  # no guardrail


def test_a_plain_campaign_plan_matches_the_campaign_hash() -> None:
    campaign = uuid.uuid4()
    variants = [WeightedVariant("x", 1), WeightedVariant("y", 2)]
    plan = VariantPlan.of_campaign(campaign, variants)
    for p in PROSPECTS[:500]:
        pid = uuid.UUID(p)
        choice = plan.choose(pid)
        assert choice.cohort is Cohort.TEST and choice.arm is not None
        assert choice.arm.name == assign_variant(campaign, pid, variants)


def test_variant_plan_holds_out_holds_back_and_prefers_the_arms_channels() -> None:
    telegram_first = ArmSettings("b", channel_order=(Channel.TELEGRAM,))
    plan = VariantPlan(EXPERIMENT, (ArmSettings("a"), telegram_first), 0.2, 0.5)
    skips = Counter(
        plan.choose(uuid.UUID(p)).skip
        for p in PROSPECTS[:4000]
        if plan.choose(uuid.UUID(p)).arm is None
    )
    assert skips[ArmSkip.HOLDOUT] / 4000 == pytest.approx(0.2, abs=0.03)
    assert skips[ArmSkip.HELD] / 4000 == pytest.approx(0.4, abs=0.03)
    usable = (Channel.WHATSAPP, Channel.SIGNAL, Channel.TELEGRAM)
    assert telegram_first.channels(usable) == (Channel.TELEGRAM, Channel.WHATSAPP, Channel.SIGNAL)
    # A preference, not a restriction: a prospect without Telegram is still reachable.
    assert telegram_first.channels((Channel.SIGNAL,)) == (Channel.SIGNAL,)
    only = VariantPlan.only(telegram_first, key=EXPERIMENT)
    assert {only.choose(uuid.UUID(p)).arm for p in PROSPECTS[:200]} == {
        ArmSettings("b", 1.0, timedelta(0), (Channel.TELEGRAM,))
    }
