"""How good a probability model is on imbalanced outcomes.

Accuracy alone flatters a model when positives are rare, so an :class:`Evaluation` also
carries ranking quality (ROC-AUC with a bootstrap interval, PR-AUC), probability quality
(log loss, Brier score), precision and recall at the PM thresholds, and a calibration table
with its expected calibration error (ECE): the count-weighted gap between the mean predicted
probability and the observed rate in each bin.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn import metrics as skm

THRESHOLDS: tuple[float, ...] = (0.5, 0.7, 0.9)
BINS = 10


@dataclass(frozen=True, slots=True)
class ThresholdMetrics:
    """What happens if everything scored at or above ``threshold`` is called a lead.

    ``precision`` is ``None`` when nothing reaches the threshold.
    """

    threshold: float
    flagged: int
    precision: float | None
    recall: float
    accuracy: float


@dataclass(frozen=True, slots=True)
class CalibrationBin:
    """Predictions in ``[lower, upper)`` (the last bin includes 1.0) and what happened."""

    lower: float
    upper: float
    count: int
    mean_predicted: float | None
    observed_rate: float | None


@dataclass(frozen=True, slots=True)
class Evaluation:
    n: int
    positives: int
    roc_auc: float
    roc_auc_ci95: tuple[float, float]
    pr_auc: float
    log_loss: float
    brier: float
    accuracy: float
    ece: float
    thresholds: tuple[ThresholdMetrics, ...]
    calibration: tuple[CalibrationBin, ...]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Evaluation:
        """Rebuild from :meth:`to_dict` output (after a JSON round trip)."""
        nested = ("roc_auc_ci95", "thresholds", "calibration")
        low, high = data["roc_auc_ci95"]
        return cls(
            **{k: v for k, v in data.items() if k not in nested},
            roc_auc_ci95=(float(low), float(high)),
            thresholds=tuple(ThresholdMetrics(**t) for t in data["thresholds"]),
            calibration=tuple(CalibrationBin(**b) for b in data["calibration"]),
        )


def evaluate(
    y_true: NDArray[np.integer] | Sequence[int],
    probability: NDArray[np.floating] | Sequence[float],
    *,
    thresholds: Sequence[float] = THRESHOLDS,
    seed: int = 0,
) -> Evaluation:
    """All the metrics of predicted probabilities against 0/1 outcomes (both classes needed)."""
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(probability, dtype=np.float64)
    _check_inputs(y, p)
    calibration = calibration_table(y, p)
    return Evaluation(
        n=len(y),
        positives=int(y.sum()),
        roc_auc=float(skm.roc_auc_score(y, p)),
        roc_auc_ci95=bootstrap_auc_interval(y, p, seed=seed),
        pr_auc=float(skm.average_precision_score(y, p)),
        log_loss=float(skm.log_loss(y, p, labels=[0, 1])),
        brier=float(skm.brier_score_loss(y, p)),
        accuracy=float(skm.accuracy_score(y, p >= 0.5)),
        ece=expected_calibration_error(calibration),
        thresholds=tuple(threshold_metrics(y, p, threshold=t) for t in thresholds),
        calibration=calibration,
    )


def _check_inputs(y: NDArray[np.int64], p: NDArray[np.float64]) -> None:
    if y.shape != p.shape or y.ndim != 1:
        raise ValueError(f"outcomes {y.shape} and probabilities {p.shape} must be equal 1-d")
    if not np.isin(y, (0, 1)).all() or len(np.unique(y)) < 2:
        raise ValueError("outcomes must be 0/1 with both classes present")
    if not ((p >= 0) & (p <= 1)).all():
        raise ValueError("probabilities must lie in [0, 1]")


def threshold_metrics(
    y: NDArray[np.int64], p: NDArray[np.float64], *, threshold: float
) -> ThresholdMetrics:
    """Precision, recall and accuracy when scores at or above ``threshold`` count as leads."""
    flagged = p >= threshold
    precision = float(skm.precision_score(y, flagged, zero_division=0)) if flagged.any() else None
    return ThresholdMetrics(
        threshold=threshold,
        flagged=int(flagged.sum()),
        precision=precision,
        recall=float(skm.recall_score(y, flagged, zero_division=0)),
        accuracy=float(skm.accuracy_score(y, flagged)),
    )


def calibration_table(
    y: NDArray[np.int64], p: NDArray[np.float64], *, bins: int = BINS
) -> tuple[CalibrationBin, ...]:
    """Equal-width probability bins: how many fell in each, mean predicted, observed rate."""
    index = np.clip((p * bins).astype(np.int64), 0, bins - 1)
    table = []
    for b in range(bins):
        members = index == b
        count = int(members.sum())
        table.append(
            CalibrationBin(
                lower=b / bins,
                upper=(b + 1) / bins,
                count=count,
                mean_predicted=float(p[members].mean()) if count else None,
                observed_rate=float(y[members].mean()) if count else None,
            )
        )
    return tuple(table)


def expected_calibration_error(table: Sequence[CalibrationBin]) -> float:
    """Count-weighted mean of |mean predicted - observed rate| over the bins."""
    total = sum(b.count for b in table)
    gaps = [
        b.count * abs(b.mean_predicted - b.observed_rate)
        for b in table
        if b.mean_predicted is not None and b.observed_rate is not None
    ]
    return math.fsum(gaps) / total if total else math.nan


def bootstrap_auc_interval(
    y: NDArray[np.int64], p: NDArray[np.float64], *, seed: int = 0, rounds: int = 200
) -> tuple[float, float]:
    """A 95% percentile bootstrap interval for ROC-AUC: how much the hold-out figure can move.

    Each resample is a vector of row weights over the same sorted scores, so a round costs a
    few array passes instead of a sort.
    """
    rng = np.random.default_rng(seed)
    _, groups = np.unique(p, return_inverse=True)
    aucs = []
    for _ in range(rounds):
        weights = np.bincount(rng.integers(0, len(y), len(y)), minlength=len(y))
        auc = weighted_auc(groups, y, weights.astype(np.float64))
        if not math.isnan(auc):
            aucs.append(auc)
    low, high = np.percentile(aucs, [2.5, 97.5])
    return float(low), float(high)


def weighted_auc(
    groups: NDArray[np.intp], y: NDArray[np.int64], weights: NDArray[np.float64]
) -> float:
    """ROC-AUC with row weights; ``groups`` ranks the scores (equal scores, equal group).

    The chance that a positive outscores a negative, ties counting half.
    """
    size = int(groups.max()) + 1
    positives = np.bincount(groups, weights=weights * y, minlength=size)
    negatives = np.bincount(groups, weights=weights * (1 - y), minlength=size)
    below = np.cumsum(negatives) - negatives
    pairs = positives.sum() * negatives.sum()
    if pairs == 0:
        return math.nan
    return float((positives * (below + 0.5 * negatives)).sum() / pairs)
