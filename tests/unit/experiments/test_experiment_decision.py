"""The pure test-then-send decision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mcep.experiments.decision import (
    ArmTally,
    Continue,
    Fallback,
    NoWinner,
    Reason,
    SplitTestPlan,
    Winner,
    cell_size,
    decide,
)

NOW = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)


def plan(**overrides: object) -> SplitTestPlan:
    settings: dict[str, object] = {
        "test_cell_size": 100,
        "deadline": NOW + timedelta(days=1),
        "max_opt_out_rate": 0.03,
    }
    settings.update(overrides)
    return SplitTestPlan(**settings)  # type: ignore[arg-type]


def test_cell_size_splits_the_test_fraction_between_arms() -> None:
    assert cell_size(1000, test_fraction=0.2, arms=2) == 100
    assert cell_size(1000, test_fraction=0.2, arms=3) == 66
    with pytest.raises(ValueError):
        cell_size(1000, test_fraction=0.0, arms=2)


def test_keeps_testing_while_the_evidence_is_thin() -> None:
    decision = decide([ArmTally("control", 30, 9), ArmTally("b", 30, 14)], plan(), now=NOW)
    assert isinstance(decision, Continue)
    assert decision.evidence[1].p_value is not None and decision.evidence[1].p_value > 0.05


def test_declares_a_significant_variant_the_winner_with_its_numbers() -> None:
    arms = [ArmTally("control", 80, 20, opt_outs=1), ArmTally("b", 80, 40, opt_outs=1)]
    decision = decide(arms, plan(), now=NOW)
    assert isinstance(decision, Winner)
    assert decision.arm == "b"
    assert decision.reason is Reason.SIGNIFICANT
    b = decision.evidence[1]
    assert b.reply_rate == 0.5 and b.p_value is not None and b.p_value <= 0.05
    assert b.likelihood_ratio is not None and b.likelihood_ratio >= 20


def test_control_wins_when_the_variant_is_significantly_worse() -> None:
    arms = [ArmTally("control", 80, 40), ArmTally("b", 80, 20)]
    decision = decide(arms, plan(), now=NOW)
    assert isinstance(decision, Winner) and decision.arm == "control"


def test_guardrail_holds_back_a_winner_that_drives_opt_outs() -> None:
    arms = [ArmTally("control", 80, 20, opt_outs=0), ArmTally("b", 80, 40, opt_outs=4)]
    decision = decide(arms, plan(), now=NOW)
    assert isinstance(decision, Continue)
    assert decision.held_by_guardrail == ("b",)
    relaxed = decide(arms, plan(max_opt_out_rate=0.05), now=NOW)
    assert isinstance(relaxed, Winner) and relaxed.arm == "b"


def test_holm_correction_applies_across_variants() -> None:
    # 40/80 vs 20/80 has an always-valid p of about 0.032: enough alone, not among two.
    leader = ArmTally("b", 80, 40)
    alone = decide([ArmTally("control", 80, 20), leader], plan(), now=NOW)
    assert isinstance(alone, Winner)
    alone_p = alone.evidence[1].p_value
    assert alone_p is not None and 0.025 < alone_p <= 0.05
    crowded = decide([ArmTally("control", 80, 20), leader, ArmTally("c", 80, 20)], plan(), now=NOW)
    assert isinstance(crowded, Continue)
    assert crowded.evidence[1].p_value == pytest.approx(2 * alone_p)


def test_best_of_several_significant_variants_wins() -> None:
    arms = [ArmTally("control", 100, 10), ArmTally("b", 100, 45), ArmTally("c", 100, 55)]
    decision = decide(arms, plan(), now=NOW)
    assert isinstance(decision, Winner) and decision.arm == "c"


@pytest.mark.parametrize(
    ("fallback", "expected"), [(Fallback.CONTROL, "control"), (Fallback.BEST, "b")]
)
def test_deadline_without_a_winner_falls_back(fallback: Fallback, expected: str) -> None:
    arms = [ArmTally("control", 30, 9), ArmTally("b", 30, 14), ArmTally("c", 30, 20, opt_outs=5)]
    decision = decide(arms, plan(fallback=fallback), now=NOW + timedelta(days=1))
    assert isinstance(decision, NoWinner)
    assert decision.reason is Reason.DEADLINE
    assert decision.arm == expected  # "c" looks best but breaches the opt-out guardrail


def test_full_test_cells_end_the_test_before_the_deadline() -> None:
    arms = [ArmTally("control", 100, 30), ArmTally("b", 100, 36)]
    decision = decide(arms, plan(), now=NOW)
    assert isinstance(decision, NoWinner)
    assert decision.reason is Reason.TEST_CELLS_FULL
    assert decision.arm == "control"


def test_an_arm_with_no_sends_yet_is_no_evidence() -> None:
    decision = decide([ArmTally("control", 0, 0), ArmTally("b", 10, 9)], plan(), now=NOW)
    assert isinstance(decision, Continue)
    assert decision.evidence[1].likelihood_ratio == 1.0


def test_impossible_tallies_and_plans_are_rejected() -> None:
    with pytest.raises(ValueError):
        ArmTally("b", 10, 11)
    with pytest.raises(ValueError):
        plan(alpha=0.0)
    with pytest.raises(ValueError):
        decide([ArmTally("control", 10, 1)], plan(), now=NOW)
