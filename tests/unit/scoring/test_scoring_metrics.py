"""Metrics on an example small enough to work out by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mcep.scoring.metrics import Evaluation, bootstrap_auc_interval, evaluate, weighted_auc

Y = [0, 0, 1, 1, 0, 1]
P = [0.1, 0.4, 0.35, 0.8, 0.7, 0.95]


@pytest.fixture(scope="module")
def result() -> Evaluation:
    return evaluate(Y, P)


def test_ranking_metrics(result: Evaluation) -> None:
    # Positives 0.35, 0.8, 0.95 against negatives 0.1, 0.4, 0.7: 1 + 3 + 3 of 9 pairs in order.
    assert result.roc_auc == pytest.approx(7 / 9)
    # By falling score: +, +, -, -, +  -> precision at each positive 1, 1, 3/5.
    assert result.pr_auc == pytest.approx((1 + 1 + 3 / 5) / 3)
    low, high = result.roc_auc_ci95
    assert 0 <= low <= high <= 1


def test_probability_metrics(result: Evaluation) -> None:
    likelihoods = [0.9, 0.6, 0.35, 0.8, 0.3, 0.95]
    assert result.log_loss == pytest.approx(-sum(map(math.log, likelihoods)) / 6)
    squared = [0.01, 0.16, 0.4225, 0.04, 0.49, 0.0025]
    assert result.brier == pytest.approx(sum(squared) / 6)
    assert result.accuracy == pytest.approx(4 / 6)
    assert (result.n, result.positives) == (6, 3)


def test_precision_and_recall_at_the_pm_thresholds(result: Evaluation) -> None:
    at = {t.threshold: t for t in result.thresholds}
    assert (at[0.5].flagged, at[0.5].precision, at[0.5].recall) == (3, 2 / 3, 2 / 3)
    assert (at[0.7].flagged, at[0.7].precision, at[0.7].recall) == (3, 2 / 3, 2 / 3)
    assert (at[0.9].flagged, at[0.9].precision) == (1, 1.0)
    assert at[0.9].recall == pytest.approx(1 / 3)
    assert at[0.9].accuracy == pytest.approx(4 / 6)


def test_nothing_flagged_has_no_precision() -> None:
    low = evaluate([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4])
    assert all(t.precision is None and t.flagged == 0 for t in low.thresholds)


def test_calibration_table_and_its_error(result: Evaluation) -> None:
    bins = result.calibration
    assert len(bins) == 10 and sum(b.count for b in bins) == 6
    filled = {round(10 * b.lower): b for b in bins if b.count}
    assert sorted(filled) == [1, 3, 4, 7, 8, 9]
    assert filled[3].mean_predicted == 0.35 and filled[3].observed_rate == 1.0
    assert bins[0].count == 0 and bins[0].mean_predicted is None
    # One prediction per bin, so the error is the mean of |p - y|.
    assert result.ece == pytest.approx((0.1 + 0.4 + 0.65 + 0.2 + 0.7 + 0.05) / 6)


def test_a_perfectly_calibrated_model_has_a_small_calibration_error() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 20_000)
    y = (rng.uniform(0, 1, p.size) < p).astype(int)
    assert evaluate(y, p).ece < 0.02
    assert evaluate(y, np.sqrt(p)).ece > 0.1  # over-confident in "yes"


def test_a_probability_of_one_lands_in_the_last_bin() -> None:
    assert evaluate([0, 1], [0.0, 1.0]).calibration[-1].count == 1


def test_survives_a_json_round_trip(result: Evaluation) -> None:
    assert Evaluation.from_dict(json.loads(json.dumps(result.to_dict()))) == result


@pytest.mark.parametrize(
    ("y", "p", "problem"),
    [
        ([0, 0], [0.1, 0.2], "both classes"),
        ([0, 1], [0.1, 1.2], r"\[0, 1\]"),
        ([0, 1], [0.1], "1-d"),
    ],
)
def test_bad_inputs_are_refused(y: list[int], p: list[float], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        evaluate(y, p)


def test_weighted_auc_agrees_with_sklearn_sample_weights_and_ties() -> None:
    rng = np.random.default_rng(1)
    p = np.round(rng.uniform(0, 1, 2_000), 2)  # many ties
    y = (rng.uniform(0, 1, p.size) < p).astype(np.int64)
    weights = rng.integers(0, 4, p.size).astype(np.float64)
    _, groups = np.unique(p, return_inverse=True)
    expected = roc_auc_score(y, p, sample_weight=weights)
    assert weighted_auc(groups, y, weights) == pytest.approx(expected, rel=1e-12)


def test_bootstrap_interval_brackets_the_auc_and_narrows_with_more_rows() -> None:
    rng = np.random.default_rng(2)
    widths = []
    for n in (500, 20_000):
        p = rng.uniform(0, 1, n)
        y = (rng.uniform(0, 1, n) < p).astype(np.int64)
        low, high = bootstrap_auc_interval(y, p, seed=0)
        assert low < evaluate(y, p).roc_auc < high
        widths.append(high - low)
    assert widths[1] < widths[0] / 3
