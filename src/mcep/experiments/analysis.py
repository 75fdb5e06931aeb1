"""Every statistic for an experiment's counts, in one report value.

The CLI calculator and any results page build on :func:`analyze`, so they can never disagree.
Each variant is compared with control with the variant first: a positive z or difference
means the variant is ahead, and lift and odds ratio are the variant's over control's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from mcep.experiments.sequential import DEFAULT_TAU, SequentialTest, msprt
from mcep.experiments.stats import (
    ChiSquareTest,
    Counts,
    FisherTest,
    Interval,
    Lift,
    SelectedTest,
    SrmCheck,
    ZTest,
    association_test,
    chance_to_beat,
    chi_square_test,
    contingency_table,
    fisher_exact_test,
    holm_adjust,
    relative_lift,
    sample_ratio_mismatch,
    two_proportion_z_test,
    wilson_interval,
)


@dataclass(frozen=True, slots=True)
class ArmSummary:
    """One arm's counts, rate and Wilson interval."""

    label: str
    successes: int
    trials: int
    rate: float
    interval: Interval


@dataclass(frozen=True, slots=True)
class Comparison:
    """One variant against control, by every test MCEP reports.

    ``holm_p_value`` adjusts the selected fixed-sample test, ``sequential_holm_p_value`` the
    always-valid one, over all variants; with one variant they equal the raw values.
    """

    label: str
    z_test: ZTest
    chi_square: ChiSquareTest
    chi_square_yates: ChiSquareTest
    fisher: FisherTest
    selected: SelectedTest
    holm_p_value: float
    lift: Lift
    chance_to_beat_control: float
    sequential: SequentialTest
    sequential_holm_p_value: float


@dataclass(frozen=True, slots=True)
class ExperimentReport:
    """The whole analysis; ``srm`` checks arm sizes against ``weights``."""

    alpha: float
    arms: tuple[ArmSummary, ...]
    comparisons: tuple[Comparison, ...]
    weights: tuple[float, ...]
    srm: SrmCheck


def analyze(
    control: Counts,
    variants: Sequence[Counts],
    *,
    alpha: float = 0.05,
    weights: Sequence[float] | None = None,
    tau: float = DEFAULT_TAU,
) -> ExperimentReport:
    """Analyse control against each variant; intervals are at ``1 - alpha`` confidence.

    ``weights`` are the traffic weights the arms were meant to get (equal when omitted).
    """
    if not variants:
        raise ValueError("need at least one variant to compare with control")
    everyone = [control, *variants]
    weights = tuple(weights) if weights is not None else (1.0,) * len(everyone)
    labels = ["control", *(f"variant {i}" for i in range(1, len(everyone)))]
    raw = [
        _compare(label, variant, control, alpha, tau)
        for label, variant in zip(labels[1:], variants, strict=True)
    ]
    return ExperimentReport(
        alpha=alpha,
        arms=tuple(_summary(label, c, alpha) for label, c in zip(labels, everyone, strict=True)),
        comparisons=_with_holm(raw),
        weights=weights,
        srm=sample_ratio_mismatch([c.trials for c in everyone], weights=weights),
    )


def _summary(label: str, counts: Counts, alpha: float) -> ArmSummary:
    interval = wilson_interval(counts, confidence=1.0 - alpha)
    return ArmSummary(label, counts.successes, counts.trials, counts.rate, interval)


def _compare(label: str, variant: Counts, control: Counts, alpha: float, tau: float) -> Comparison:
    table = contingency_table(variant, control)
    selected = association_test(table)
    sequential = msprt(variant, control, alpha=alpha, tau=tau)
    return Comparison(
        label=label,
        z_test=two_proportion_z_test(variant, control),
        chi_square=chi_square_test(table, yates=False),
        chi_square_yates=chi_square_test(table, yates=True),
        fisher=fisher_exact_test(table),
        selected=selected,
        holm_p_value=selected.p_value,
        lift=relative_lift(variant, control, confidence=1.0 - alpha),
        chance_to_beat_control=chance_to_beat(variant, control),
        sequential=sequential,
        sequential_holm_p_value=sequential.p_value,
    )


def _with_holm(comparisons: list[Comparison]) -> tuple[Comparison, ...]:
    fixed = holm_adjust([c.selected.p_value for c in comparisons])
    sequential = holm_adjust([c.sequential.p_value for c in comparisons])
    return tuple(
        replace(c, holm_p_value=f, sequential_holm_p_value=s)
        for c, f, s in zip(comparisons, fixed, sequential, strict=True)
    )
