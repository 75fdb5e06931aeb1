"""Fixed-sample statistics for comparing reply rates between experiment arms.

The tests here answer "is there a difference?" for one look at the data. Results that a PM may
refresh every few minutes need the always-valid test in :mod:`mcep.experiments.sequential`
instead; these numbers are still reported because they are what people know how to read.

Conventions: a comparison of ``first`` with ``second`` reports ``first - second`` (so the
analysis passes the variant first and a positive z means the variant is ahead), and 2x2 tables
have one row per arm, ``[successes, failures]``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special
from scipy import stats as sps

from mcep.errors import ValidationFailed

FloatArray = npt.NDArray[np.float64]
Table2x2 = tuple[tuple[int, int], tuple[int, int]]

# Below this expected count the chi-square approximation is unreliable (Cochran's rule).
MIN_EXPECTED_CELL = 5.0
# The sample ratio check runs on every refresh, so it only alarms on overwhelming evidence.
SRM_THRESHOLD = 0.001


class InvalidCounts(ValidationFailed, ValueError):
    """Counts that cannot describe a real experiment arm (a 422 wherever it reaches the API)."""


@dataclass(frozen=True, slots=True)
class Counts:
    """Successes (replies) out of trials (messages) for one arm."""

    successes: int
    trials: int

    def __post_init__(self) -> None:
        if self.trials <= 0:
            raise InvalidCounts(f"trials must be positive, got {self.trials}")
        if not 0 <= self.successes <= self.trials:
            raise InvalidCounts(
                f"successes must be between 0 and trials ({self.trials}), got {self.successes}"
            )

    @property
    def rate(self) -> float:
        return self.successes / self.trials

    @property
    def failures(self) -> int:
        return self.trials - self.successes


@dataclass(frozen=True, slots=True)
class Interval:
    """A two-sided interval at the stated confidence."""

    low: float
    high: float
    confidence: float


@dataclass(frozen=True, slots=True)
class ZTest:
    """Pooled two-proportion z-test of ``first - second``."""

    z: float
    p_value: float
    difference: float


@dataclass(frozen=True, slots=True)
class ChiSquareTest:
    """Pearson chi-square test of independence on a 2x2 table."""

    statistic: float
    p_value: float
    yates: bool


@dataclass(frozen=True, slots=True)
class FisherTest:
    """Fisher's exact test; ``odds_ratio`` is the sample odds of row one over row two."""

    odds_ratio: float
    p_value: float


class Method(enum.StrEnum):
    """Which significance test :func:`association_test` chose."""

    CHI_SQUARE = "chi_square"
    FISHER = "fisher"


@dataclass(frozen=True, slots=True)
class SelectedTest:
    """The test chosen for a table by :func:`association_test`."""

    method: Method
    p_value: float
    min_expected: float


@dataclass(frozen=True, slots=True)
class Lift:
    """Relative lift ``rate(first) / rate(second) - 1``; ``None`` when ``second`` never succeeds."""

    estimate: float | None
    interval: Interval | None


@dataclass(frozen=True, slots=True)
class SrmCheck:
    """Chi-square goodness of fit of arm sizes against their traffic weights."""

    statistic: float
    p_value: float
    mismatch: bool


def contingency_table(first: Counts, second: Counts) -> Table2x2:
    """The 2x2 table with one row per arm: ``[successes, failures]``."""
    return ((first.successes, first.failures), (second.successes, second.failures))


def expected_cells(table: Table2x2) -> FloatArray:
    """Cell counts expected under independence, from the table's margins."""
    observed = np.asarray(table, dtype=np.float64)
    rows = observed.sum(axis=1, keepdims=True)
    columns = observed.sum(axis=0, keepdims=True)
    expected: FloatArray = rows * columns / observed.sum()
    return expected


def pooled_z(
    s1: npt.ArrayLike, n1: npt.ArrayLike, s2: npt.ArrayLike, n2: npt.ArrayLike
) -> FloatArray:
    """Pooled two-proportion z statistics, elementwise, for whole simulations at once.

    Where both arms are all failures (or all successes) the data hold no evidence of a
    difference, so z is 0 rather than 0/0.
    """
    s1, n1, s2, n2 = (np.asarray(a, dtype=np.float64) for a in (s1, n1, s2, n2))
    pooled = (s1 + s2) / (n1 + n2)
    variance = pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)
    difference = s1 / n1 - s2 / n2
    with np.errstate(divide="ignore", invalid="ignore"):
        z: FloatArray = np.where(variance > 0, difference / np.sqrt(variance), 0.0)
    return z


def two_proportion_z_test(first: Counts, second: Counts) -> ZTest:
    """Two-sided pooled z-test of equal rates, reporting ``first - second``."""
    z = float(pooled_z(first.successes, first.trials, second.successes, second.trials))
    p_value = float(2.0 * sps.norm.sf(abs(z)))
    return ZTest(z=z, p_value=p_value, difference=first.rate - second.rate)


def chi_square_test(table: Table2x2, *, yates: bool) -> ChiSquareTest:
    """Pearson chi-square on a 2x2 table, with or without Yates' continuity correction."""
    if np.any(expected_cells(table) == 0):
        # An empty row or column: every arm looks the same, which is no evidence at all.
        return ChiSquareTest(statistic=0.0, p_value=1.0, yates=yates)
    result = sps.chi2_contingency(np.asarray(table), correction=yates)
    return ChiSquareTest(
        statistic=float(result.statistic), p_value=float(result.pvalue), yates=yates
    )


def fisher_exact_test(table: Table2x2) -> FisherTest:
    """Two-sided Fisher exact test, exact at any sample size."""
    result = sps.fisher_exact(np.asarray(table), alternative="two-sided")
    return FisherTest(odds_ratio=float(result.statistic), p_value=float(result.pvalue))


def association_test(table: Table2x2) -> SelectedTest:
    """The test to trust for this table: Fisher when any expected cell is under 5.

    Otherwise Pearson's chi-square without Yates' correction, which equals the two-sided
    pooled z-test; the correction is skipped because it is needlessly conservative once the
    small-cell case goes to the exact test.
    """
    min_expected = float(expected_cells(table).min())
    if min_expected < MIN_EXPECTED_CELL:
        p_value = fisher_exact_test(table).p_value
        return SelectedTest(Method.FISHER, p_value=p_value, min_expected=min_expected)
    p_value = chi_square_test(table, yates=False).p_value
    return SelectedTest(Method.CHI_SQUARE, p_value=p_value, min_expected=min_expected)


def wilson_interval(counts: Counts, *, confidence: float = 0.95) -> Interval:
    """Wilson score interval for one arm's rate; sensible even at 0 or all successes."""
    z = _z_quantile(confidence)
    n, rate = counts.trials, counts.rate
    denominator = 1.0 + z * z / n
    centre = (rate + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n))
    return Interval(max(0.0, centre - half), min(1.0, centre + half), confidence)


def relative_lift(first: Counts, second: Counts, *, confidence: float = 0.95) -> Lift:
    """Relative lift of ``first`` over ``second`` with a log risk-ratio (Katz) interval.

    A zero success count makes the log ratio infinite, so in that case half a success is
    added to each arm (the Haldane-Anscombe correction) for the interval only.
    """
    if second.successes == 0:
        return Lift(estimate=None, interval=None)
    s1, n1 = float(first.successes), float(first.trials)
    s2, n2 = float(second.successes), float(second.trials)
    if s1 == 0:
        s1, n1, s2, n2 = s1 + 0.5, n1 + 1, s2 + 0.5, n2 + 1
    log_ratio = math.log((s1 / n1) / (s2 / n2))
    se = math.sqrt(1 / s1 - 1 / n1 + 1 / s2 - 1 / n2)
    spread = _z_quantile(confidence) * se
    interval = Interval(
        math.exp(log_ratio - spread) - 1.0, math.exp(log_ratio + spread) - 1.0, confidence
    )
    return Lift(estimate=first.rate / second.rate - 1.0, interval=interval)


def chance_to_beat(first: Counts, second: Counts) -> float:
    """Posterior probability that ``first`` has the higher rate, under Beta(1, 1) priors.

    Exact: for integer Beta parameters P(X > Y) is a finite sum with one term per success of
    ``first``; evaluating it in log space keeps it accurate for large arms, so no simulation
    noise has to be bounded.
    """
    a1, b1 = first.successes + 1, first.failures + 1
    a2, b2 = second.successes + 1, second.failures + 1
    i = np.arange(a1, dtype=np.float64)
    log_terms = (
        special.betaln(a2 + i, b2 + b1)
        - np.log(b1 + i)
        - special.betaln(1 + i, b1)
        - special.betaln(a2, b2)
    )
    return float(np.clip(np.exp(special.logsumexp(log_terms)), 0.0, 1.0))


def holm_adjust(p_values: Sequence[float]) -> tuple[float, ...]:
    """Holm step-down adjusted p-values, in the order given.

    Holm controls the family-wise error rate under any dependence between the comparisons,
    which matters because every variant is compared with the same control.
    """
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    multipliers = len(p) - np.arange(len(p))
    stepped = np.minimum(np.maximum.accumulate(multipliers * p[order]), 1.0)
    adjusted = np.empty_like(p)
    adjusted[order] = stepped
    return tuple(float(value) for value in adjusted)


def sample_ratio_mismatch(
    observed: Sequence[int], *, weights: Sequence[float], threshold: float = SRM_THRESHOLD
) -> SrmCheck:
    """Check arm sizes against their traffic weights (chi-square goodness of fit).

    A mismatch means assignment or delivery is broken, and every other statistic for the
    experiment is suspect until it is explained.
    """
    if len(observed) != len(weights) or len(observed) < 2:
        raise InvalidCounts("need one weight per arm and at least two arms")
    if any(w <= 0 for w in weights) or any(n < 0 for n in observed) or sum(observed) == 0:
        raise InvalidCounts("weights must be positive and counts non-negative, not all zero")
    share = np.asarray(weights, dtype=np.float64) / float(sum(weights))
    result = sps.chisquare(np.asarray(observed), f_exp=share * sum(observed))
    p_value = float(result.pvalue)
    return SrmCheck(float(result.statistic), p_value=p_value, mismatch=p_value < threshold)


def _z_quantile(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    return float(sps.norm.ppf(0.5 + confidence / 2.0))
