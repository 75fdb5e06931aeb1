"""The mixture SPRT and its confidence sequence."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mcep.experiments.sequential import (
    DEFAULT_TAU,
    confidence_sequence,
    log_likelihood_ratio,
    msprt,
)
from mcep.experiments.stats import Counts


def test_likelihood_ratio_matches_the_normal_mixture_formula() -> None:
    # 30/50 vs 15/50: pooled rate 0.45, V = 0.45 * 0.55 * (2 / 50), difference 0.3.
    variance, tau2 = 0.45 * 0.55 * 0.04, DEFAULT_TAU**2
    expected = math.sqrt(variance / (variance + tau2)) * math.exp(
        tau2 * 0.3**2 / (2 * variance * (variance + tau2))
    )
    result = msprt(Counts(30, 50), Counts(15, 50))
    assert result.likelihood_ratio == pytest.approx(expected)
    assert result.p_value == pytest.approx(1 / expected)
    assert result.significant is (expected >= 20)


def test_ratio_is_symmetric_and_grows_with_the_gap() -> None:
    control = Counts(15, 50)
    ratios = [msprt(Counts(s, 50), control).likelihood_ratio for s in (15, 20, 25, 30)]
    assert ratios == sorted(ratios)
    assert ratios[0] < 1.0  # no difference at all is evidence *for* the null
    assert msprt(control, Counts(30, 50)).likelihood_ratio == pytest.approx(ratios[-1])


def test_data_without_information_give_a_ratio_of_one() -> None:
    assert log_likelihood_ratio(0, 20, 0, 20).item() == 0.0
    assert log_likelihood_ratio(20, 20, 20, 20).item() == 0.0
    assert log_likelihood_ratio(np.array([0]), np.array([0]), 3, 10).item() == 0.0


def test_significance_follows_alpha() -> None:
    first, second = Counts(40, 80), Counts(20, 80)  # ratio about 31
    assert msprt(first, second, alpha=0.05).significant
    assert not msprt(first, second, alpha=0.01).significant


def test_confidence_sequence_is_wider_than_a_fixed_sample_interval() -> None:
    first, second = Counts(60, 100), Counts(30, 100)
    interval = confidence_sequence(first, second)
    fixed_half = 1.96 * math.sqrt(0.6 * 0.4 / 100 + 0.3 * 0.7 / 100)
    assert interval.low < 0.3 - fixed_half
    assert interval.high > 0.3 + fixed_half
    assert interval.low > 0.0  # a gap this large is still resolved


def test_confidence_sequence_has_width_even_before_any_reply() -> None:
    interval = confidence_sequence(Counts(0, 10), Counts(0, 10))
    assert interval.low < 0.0 < interval.high
    assert interval.low >= -1.0 and interval.high <= 1.0


def test_confidence_sequence_covers_the_truth_at_every_look() -> None:
    rng = np.random.default_rng(11)
    runs, looks, step, rates = 400, 30, 10, (0.4, 0.25)
    missed = 0
    for _ in range(runs):
        first = np.cumsum(rng.random(looks * step) < rates[0])
        second = np.cumsum(rng.random(looks * step) < rates[1])
        for n in range(step, looks * step + 1, step):
            interval = confidence_sequence(
                Counts(int(first[n - 1]), n), Counts(int(second[n - 1]), n)
            )
            if not interval.low <= rates[0] - rates[1] <= interval.high:
                missed += 1
                break
    assert missed / runs <= 0.05
