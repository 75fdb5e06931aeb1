"""The results builder reports exactly what the pure statistics compute on the same counts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from mcep.experiments.analysis import analyze
from mcep.experiments.decision import ArmTally, Continue, Fallback, Winner, decide
from mcep.experiments.design import ExperimentDesign, ExperimentStatus, Metric, Mode
from mcep.experiments.results import (
    ExperimentCounts,
    GroupCounts,
    build_results,
    decision_view,
    tallies,
)
from mcep.experiments.schemas import ExperimentResults
from mcep.experiments.stats import (
    Counts,
    association_test,
    contingency_table,
    relative_lift,
    sample_ratio_mismatch,
)

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
ID = uuid.UUID(int=1)


def _results(design: ExperimentDesign, counts: ExperimentCounts) -> ExperimentResults:
    return build_results(
        design, counts, experiment_id=ID, status=ExperimentStatus.RUNNING, as_of=NOW
    )


COUNTS = ExperimentCounts(
    test={
        "control": GroupCounts(assigned=90, sent=83, replied=5, read=40, opted_out=1),
        "b": GroupCounts(assigned=104, sent=99, replied=12, read=61, opted_out=3),
        "c": GroupCounts(assigned=101, sent=97, replied=20, read=70, opted_out=2),
    },
    holdout=GroupCounts(assigned=60, replied=2, opted_out=1),
)
DESIGN = ExperimentDesign(
    arms=("control", "b", "c"), weights=(1.0, 1.0, 1.0), holdout=0.15, max_opt_out_rate=0.03
)


def test_every_number_equals_the_calculators_on_the_same_counts() -> None:
    shown = _results(DESIGN, COUNTS)
    report = analyze(Counts(5, 83), [Counts(12, 99), Counts(20, 97)], alpha=0.05)
    for arm, expected in zip(shown.arms, report.arms, strict=True):
        assert (arm.successes, arm.sent, arm.rate) == (
            expected.successes,
            expected.trials,
            expected.rate,
        )
        assert arm.interval is not None
        assert (arm.interval.low, arm.interval.high) == (
            expected.interval.low,
            expected.interval.high,
        )
    for got, want in zip(shown.comparisons, report.comparisons, strict=True):
        assert got.z_test.statistic == want.z_test.z and got.z_test.p_value == want.z_test.p_value
        assert got.chi_square.p_value == want.chi_square.p_value
        assert got.chi_square_yates.p_value == want.chi_square_yates.p_value
        assert got.fisher.p_value == want.fisher.p_value
        assert (got.selected_test, got.p_value) == (
            want.selected.method.value,
            want.selected.p_value,
        )
        assert got.holm_p_value == want.holm_p_value
        assert got.lift.estimate == want.lift.estimate
        assert got.chance_to_beat_control == want.chance_to_beat_control
        assert got.sequential.p_value == want.sequential.p_value
        assert got.sequential.holm_p_value == want.sequential_holm_p_value
        assert got.sequential.interval.low == want.sequential.interval.low
    # The published z for 5/83 against 12/99, seen from the variant's side.
    assert shown.comparisons[0].z_test.statistic == pytest.approx(1.4078, abs=1e-4)
    assert shown.comparisons[0].p_value == pytest.approx(0.15918, abs=1e-5)


def test_guardrail_lift_over_holdout_and_srm() -> None:
    shown = _results(DESIGN, COUNTS)
    assert [a.guardrail_ok for a in shown.arms] == [True, False, True]  # b: 3/99 > 3%
    held = Counts(2, 60)
    assert shown.holdout is not None and shown.holdout.rate == held.rate
    for lift in shown.lift_vs_holdout:
        arm = {"control": Counts(5, 83), "b": Counts(12, 99), "c": Counts(20, 97)}[lift.arm]
        assert lift.lift.estimate == relative_lift(arm, held).estimate
        assert lift.p_value == association_test(contingency_table(arm, held)).p_value
    expected = sample_ratio_mismatch([90, 104, 101, 60], weights=[0.85 / 3] * 3 + [0.15])
    assert shown.srm is not None
    assert (shown.srm.statistic, shown.srm.p_value) == (expected.statistic, expected.p_value)
    assert shown.srm.observed == {"control": 90, "b": 104, "c": 101, "holdout": 60}
    assert not shown.srm.mismatch


def test_a_broken_split_is_flagged_as_sample_ratio_mismatch() -> None:
    design = ExperimentDesign(arms=("a", "b"), weights=(1.0, 1.0))
    counts = ExperimentCounts(
        test={"a": GroupCounts(assigned=600, sent=600), "b": GroupCounts(assigned=400, sent=400)}
    )
    shown = _results(design, counts)
    assert shown.srm is not None and shown.srm.mismatch and shown.srm.p_value < 0.001
    assert any("sample ratio mismatch" in note for note in shown.notes)


def test_lower_is_better_for_opt_outs() -> None:
    design = ExperimentDesign(arms=("a", "b"), weights=(1.0, 1.0), metric=Metric.OPT_OUT_RATE)
    counts = ExperimentCounts(
        test={
            "a": GroupCounts(assigned=100, sent=100, opted_out=20),
            "b": GroupCounts(assigned=100, sent=100, opted_out=5),
        }
    )
    shown = _results(design, counts)
    assert not shown.higher_is_better and shown.arms[1].rate == 0.05
    raw = analyze(Counts(20, 100), [Counts(5, 100)]).comparisons[0]
    assert shown.comparisons[0].chance_to_beat_control == 1 - raw.chance_to_beat_control > 0.99
    # decide() always prefers the higher rate, so it is given the complement.
    assert [(t.sent, t.replies) for t in tallies(design, counts)] == [(100, 80), (100, 95)]


def test_no_comparisons_until_every_arm_has_sent() -> None:
    design = ExperimentDesign(arms=("a", "b"), weights=(1.0, 1.0))
    counts = ExperimentCounts(test={"a": GroupCounts(assigned=10, sent=4, replied=1)})
    shown = _results(design, counts)
    assert shown.comparisons == [] and shown.notes
    assert shown.arms[1].rate is None and shown.arms[1].assigned == 0
    assert _results(design, ExperimentCounts()).srm is None  # nothing assigned yet


def test_rollout_counts_the_remainder_by_the_arm_it_was_sent() -> None:
    design = ExperimentDesign(
        arms=("a", "b"), weights=(1.0, 1.0), mode=Mode.TEST_THEN_SEND, test_fraction=0.2
    )
    counts = ExperimentCounts(
        test={"a": GroupCounts(assigned=50, sent=50), "b": GroupCounts(assigned=50, sent=50)},
        remainder={"b": GroupCounts(assigned=380, sent=300, replied=150), None: GroupCounts(20)},
    )
    rollout = _results(design, counts).rollout
    assert rollout is not None
    assert (rollout.held, rollout.released, rollout.by_arm) == (400, 380, {"b": 380})
    assert rollout.rate == 0.5


def test_decision_view_carries_the_numbers_in_the_metrics_terms() -> None:
    design = ExperimentDesign(arms=("a", "b"), weights=(1.0, 1.0), fallback=Fallback.CONTROL)
    plan = design.split_plan(NOW + timedelta(days=1))
    winner = decide([ArmTally("a", 60, 15), ArmTally("b", 60, 40)], plan, now=NOW)
    assert isinstance(winner, Winner)
    view = decision_view(winner, design, recorded=True, decided_at=NOW, deadline=plan.deadline)
    assert (view.state, view.arm, view.reason) == ("winner", "b", "significant")
    assert [e.successes for e in view.evidence] == [15, 40]
    assert view.evidence[1].p_value == winner.evidence[1].p_value
    testing = decide([ArmTally("a", 10, 3), ArmTally("b", 10, 4)], plan, now=NOW)
    assert isinstance(testing, Continue)
    assert decision_view(testing, design, recorded=False, decided_at=None, deadline=None).state == (
        "testing"
    )
