"""An experiment's results from its counts: a pure function every view shares.

The counts come from the event log (see :func:`mcep.experiments.repository.group_counts`);
everything here is arithmetic over them through :mod:`mcep.experiments.analysis`, so the
numbers a PM sees are exactly the calculator's on the same counts.

Units: an arm's trials are its test-cohort messages that were sent, its successes those sent
messages whose prospect then did what the metric counts. The hold-out was sent nothing: its
rate is the share of its members who did the same on their own (any reply, opt-out or
qualification after launch), which is what "lift over doing nothing" compares with.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from mcep.experiments.analysis import Comparison, analyze
from mcep.experiments.decision import ArmEvidence, ArmTally, Continue, Decision, NoWinner
from mcep.experiments.design import ExperimentDesign, ExperimentStatus, Metric, Mode
from mcep.experiments.schemas import (
    ArmEvidenceOut,
    ArmResult,
    ComparisonResult,
    DecisionOut,
    ExperimentResults,
    HoldoutLift,
    HoldoutResult,
    IntervalOut,
    LiftOut,
    RolloutResult,
    SequentialOut,
    SrmResult,
    TestOut,
)
from mcep.experiments.stats import (
    SRM_THRESHOLD,
    Counts,
    Interval,
    Lift,
    association_test,
    contingency_table,
    relative_lift,
    sample_ratio_mismatch,
    wilson_interval,
)


@dataclass(frozen=True, slots=True)
class GroupCounts:
    """Prospects of one group, and how many of them each outcome reached.

    For treated groups the outcome counts are among prospects whose message was sent; for
    the hold-out, among all its members.
    """

    assigned: int = 0
    sent: int = 0
    replied: int = 0
    read: int = 0
    opted_out: int = 0
    qualified: int = 0

    def successes(self, metric: Metric) -> int:
        return {
            Metric.REPLY_RATE: self.replied,
            Metric.READ_RATE: self.read,
            Metric.OPT_OUT_RATE: self.opted_out,
            Metric.QUALIFIED_RATE: self.qualified,
        }[metric]


@dataclass(frozen=True, slots=True)
class ExperimentCounts:
    """Counts per group: the test cohort by arm, the hold-out, and the remainder by the arm
    it was released with (``None``: still held)."""

    test: Mapping[str, GroupCounts] = field(default_factory=dict)
    holdout: GroupCounts = field(default_factory=GroupCounts)
    remainder: Mapping[str | None, GroupCounts] = field(default_factory=dict)

    def arm(self, name: str) -> GroupCounts:
        return self.test.get(name, GroupCounts())


def tallies(design: ExperimentDesign, counts: ExperimentCounts) -> list[ArmTally]:
    """The test cells as :func:`decide` wants them, control first.

    :func:`decide` prefers the higher rate; when lower is better (opt-outs) it is given the
    complement, which leaves the two-sided evidence unchanged.
    """
    result = []
    for name in design.arms:
        group = counts.arm(name)
        hits = group.successes(design.metric)
        good = hits if design.metric.higher_is_better else group.sent - hits
        result.append(ArmTally(name, group.sent, good, group.opted_out))
    return result


def build_results(
    design: ExperimentDesign,
    counts: ExperimentCounts,
    *,
    experiment_id: uuid.UUID,
    status: ExperimentStatus,
    as_of: datetime,
    decision: DecisionOut | None = None,
) -> ExperimentResults:
    """Every number the results page shows, from the counts alone."""
    notes: list[str] = []
    comparisons = _comparisons(design, counts, notes)
    srm = _srm(design, counts)
    if srm is not None and srm.mismatch:
        notes.append(
            "sample ratio mismatch: the groups' sizes are not what the design assigns, so "
            "assignment or delivery is broken and every other number here is suspect"
        )
    if design.mode is Mode.THOMPSON:
        notes.append(
            "comparisons use the test cohort, which was split by fixed weights; the batches "
            "after it were allocated adaptively and are counted under rollout"
        )
    return ExperimentResults(
        experiment_id=experiment_id,
        status=status,
        mode=design.mode,
        metric=design.metric,
        higher_is_better=design.metric.higher_is_better,
        alpha=design.alpha,
        as_of=as_of,
        arms=[_arm(design, name, counts.arm(name)) for name in design.arms],
        comparisons=comparisons,
        holdout=_holdout(design, counts) if design.holdout > 0 else None,
        lift_vs_holdout=_holdout_lifts(design, counts) if design.holdout > 0 else [],
        srm=srm,
        decision=decision,
        rollout=_rollout(design, counts) if design.test_fraction < 1.0 else None,
        notes=notes,
    )


# --- arms and comparisons ----------------------------------------------------------------


def _counts(group: GroupCounts, metric: Metric) -> Counts | None:
    return Counts(group.successes(metric), group.sent) if group.sent > 0 else None


def _arm(design: ExperimentDesign, name: str, group: GroupCounts) -> ArmResult:
    counts = _counts(group, design.metric)
    opt_out_rate = group.opted_out / group.sent if group.sent else None
    ceiling = design.max_opt_out_rate
    return ArmResult(
        name=name,
        control=name == design.control,
        assigned=group.assigned,
        sent=group.sent,
        successes=group.successes(design.metric),
        rate=counts.rate if counts else None,
        interval=_interval(wilson_interval(counts, confidence=1 - design.alpha))
        if counts
        else None,
        opt_outs=group.opted_out,
        opt_out_rate=opt_out_rate,
        guardrail_ok=ceiling is None or opt_out_rate is None or opt_out_rate <= ceiling,
    )


def _comparisons(
    design: ExperimentDesign, counts: ExperimentCounts, notes: list[str]
) -> list[ComparisonResult]:
    arms = [_counts(counts.arm(name), design.metric) for name in design.arms]
    if any(a is None for a in arms):
        notes.append("comparisons start once every arm has at least one message sent")
        return []
    control, *variants = [a for a in arms if a is not None]
    report = analyze(control, variants, alpha=design.alpha, tau=design.tau)
    return [
        _comparison(name, c, design.metric)
        for name, c in zip(design.arms[1:], report.comparisons, strict=True)
    ]


def _comparison(name: str, c: Comparison, metric: Metric) -> ComparisonResult:
    # A continuous posterior puts no mass on a tie, so "lower" is the complement of "higher".
    chance = c.chance_to_beat_control
    return ComparisonResult(
        arm=name,
        difference=c.z_test.difference,
        z_test=TestOut(statistic=_finite(c.z_test.z), p_value=c.z_test.p_value),
        chi_square=TestOut(statistic=_finite(c.chi_square.statistic), p_value=c.chi_square.p_value),
        chi_square_yates=TestOut(
            statistic=_finite(c.chi_square_yates.statistic), p_value=c.chi_square_yates.p_value
        ),
        fisher=TestOut(statistic=None, p_value=c.fisher.p_value),
        fisher_odds_ratio=_finite(c.fisher.odds_ratio),
        selected_test=c.selected.method.value,
        p_value=c.selected.p_value,
        holm_p_value=c.holm_p_value,
        lift=_lift(c.lift),
        chance_to_beat_control=chance if metric.higher_is_better else 1.0 - chance,
        sequential=SequentialOut(
            p_value=c.sequential.p_value,
            holm_p_value=c.sequential_holm_p_value,
            likelihood_ratio=c.sequential.likelihood_ratio,
            significant=c.sequential.significant,
            difference=c.sequential.difference,
            interval=_interval(c.sequential.interval),
        ),
    )


# --- hold-out, SRM and rollout -------------------------------------------------------------


def _holdout_counts(design: ExperimentDesign, counts: ExperimentCounts) -> Counts | None:
    group = counts.holdout
    return Counts(group.successes(design.metric), group.assigned) if group.assigned else None


def _holdout(design: ExperimentDesign, counts: ExperimentCounts) -> HoldoutResult:
    held = _holdout_counts(design, counts)
    return HoldoutResult(
        assigned=counts.holdout.assigned,
        successes=counts.holdout.successes(design.metric),
        rate=held.rate if held else None,
        interval=_interval(wilson_interval(held, confidence=1 - design.alpha)) if held else None,
    )


def _holdout_lifts(design: ExperimentDesign, counts: ExperimentCounts) -> list[HoldoutLift]:
    held = _holdout_counts(design, counts)
    if held is None:
        return []
    lifts = []
    for name in design.arms:
        arm = _counts(counts.arm(name), design.metric)
        if arm is None:
            continue
        lift = relative_lift(arm, held, confidence=1 - design.alpha)
        p_value = association_test(contingency_table(arm, held)).p_value
        lifts.append(HoldoutLift(arm=name, lift=_lift(lift), p_value=p_value))
    return lifts


def _srm(design: ExperimentDesign, counts: ExperimentCounts) -> SrmResult | None:
    observed = observed_groups(design, counts)
    if sum(observed.values()) == 0:
        return None
    shares = dict(design.groups())
    check = sample_ratio_mismatch(
        [observed[g] for g in shares], weights=[shares[g] for g in shares]
    )
    return SrmResult(
        statistic=check.statistic,
        p_value=check.p_value,
        mismatch=check.mismatch,
        threshold=SRM_THRESHOLD,
        observed=observed,
        expected_share=shares,
    )


def observed_groups(design: ExperimentDesign, counts: ExperimentCounts) -> dict[str, int]:
    """How many prospects each assignment group got, in the order of ``design.groups()``."""
    sizes = {name: counts.arm(name).assigned for name in design.arms}
    sizes["holdout"] = counts.holdout.assigned
    sizes["remainder"] = sum(g.assigned for g in counts.remainder.values())
    return {name: sizes[name] for name, _ in design.groups()}


def _rollout(design: ExperimentDesign, counts: ExperimentCounts) -> RolloutResult:
    released = {arm: g for arm, g in counts.remainder.items() if arm is not None}
    sent = sum(g.sent for g in released.values())
    successes = sum(g.successes(design.metric) for g in released.values())
    return RolloutResult(
        held=sum(g.assigned for g in counts.remainder.values()),
        released=sum(g.assigned for g in released.values()),
        by_arm={arm: g.assigned for arm, g in sorted(released.items())},
        sent=sent,
        successes=successes,
        rate=successes / sent if sent else None,
    )


# --- decisions -----------------------------------------------------------------------------


def decision_view(
    decision: Decision,
    design: ExperimentDesign,
    *,
    recorded: bool,
    decided_at: datetime | None,
    deadline: datetime | None,
) -> DecisionOut:
    """A :func:`decide` outcome as the API shows it, in the metric's own terms."""
    evidence = [_evidence(e, design.metric) for e in decision.evidence]
    common: dict[str, Any] = {"recorded": recorded, "decided_at": decided_at, "deadline": deadline}
    if isinstance(decision, Continue):
        held = list(decision.held_by_guardrail)
        return DecisionOut(
            state="testing",
            arm=None,
            reason=None,
            held_by_guardrail=held,
            evidence=evidence,
            **common,
        )
    state: Literal["winner", "no_winner"] = (
        "no_winner" if isinstance(decision, NoWinner) else "winner"
    )
    return DecisionOut(
        state=state,
        arm=decision.arm,
        reason=decision.reason.value,
        held_by_guardrail=[],
        evidence=evidence,
        **common,
    )


def _evidence(evidence: ArmEvidence, metric: Metric) -> ArmEvidenceOut:
    hits = evidence.replies if metric.higher_is_better else evidence.sent - evidence.replies
    return ArmEvidenceOut(
        name=evidence.name,
        sent=evidence.sent,
        successes=hits,
        rate=hits / evidence.sent if evidence.sent else 0.0,
        opt_out_rate=evidence.opt_out_rate,
        guardrail_ok=evidence.guardrail_ok,
        p_value=evidence.p_value,
        likelihood_ratio=_finite(evidence.likelihood_ratio),
    )


# --- value helpers -------------------------------------------------------------------------


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _interval(interval: Interval) -> IntervalOut:
    return IntervalOut(low=interval.low, high=interval.high, confidence=interval.confidence)


def _lift(lift: Lift) -> LiftOut:
    return LiftOut(
        estimate=lift.estimate,
        interval=_interval(lift.interval) if lift.interval is not None else None,
    )
