"""Fixed-sample statistics against published values and exact cross-checks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate
from scipy import stats as sps

from mcep.experiments.stats import (
    Counts,
    InvalidCounts,
    Method,
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


def sig4(value: float) -> float:
    """Round to 4 significant digits, the precision the published values are checked at."""
    return float(f"{value:.4g}")


def test_chi_square_with_yates_matches_published_value() -> None:
    result = chi_square_test(((176, 230), (21035, 21018)), yates=True)
    assert sig4(result.statistic) == 6.893
    assert sig4(result.p_value) == 0.008655


def test_chi_square_without_correction_matches_published_value() -> None:
    result = chi_square_test(((12, 3), (17, 16)), yates=False)
    assert sig4(result.statistic) == 3.499
    assert sig4(result.p_value) == 0.06141


def test_fisher_exact_matches_published_value() -> None:
    result = fisher_exact_test(((8, 2), (1, 5)))
    assert result.odds_ratio == pytest.approx(20.0)
    assert sig4(result.p_value) == 0.03497


def test_pooled_z_matches_published_value() -> None:
    result = two_proportion_z_test(Counts(5, 83), Counts(12, 99))
    assert sig4(result.z) == -1.408
    assert sig4(result.p_value) == 0.1592
    assert result.difference == pytest.approx(5 / 83 - 12 / 99)


def test_z_squared_equals_uncorrected_chi_square() -> None:
    first, second = Counts(12, 99), Counts(5, 83)
    z = two_proportion_z_test(first, second)
    chi = chi_square_test(contingency_table(first, second), yates=False)
    assert z.z**2 == pytest.approx(chi.statistic)
    assert z.p_value == pytest.approx(chi.p_value)


def test_srm_matches_published_value_without_mismatch() -> None:
    result = sample_ratio_mismatch([5000, 5200], weights=[50, 50])
    assert sig4(result.statistic) == 3.922
    assert sig4(result.p_value) == 0.04767
    assert result.mismatch is False


def test_srm_flags_a_real_mismatch_and_respects_weights() -> None:
    assert sample_ratio_mismatch([5000, 5400], weights=[1, 1]).mismatch is True
    # The same sizes are exactly right for a 50:54 split.
    assert sample_ratio_mismatch([5000, 5400], weights=[50, 54]).p_value == pytest.approx(1.0)


def test_fisher_is_selected_when_an_expected_cell_is_under_five() -> None:
    table = contingency_table(Counts(3, 40), Counts(9, 40))  # expected successes: 6 and 6
    assert association_test(table).method is Method.CHI_SQUARE
    small = contingency_table(Counts(1, 30), Counts(6, 30))  # expected successes: 3.5
    selected = association_test(small)
    assert selected.method is Method.FISHER
    assert selected.min_expected == pytest.approx(3.5)
    assert selected.p_value == pytest.approx(fisher_exact_test(small).p_value)


def test_wilson_interval_matches_published_values() -> None:
    # Newcombe (1998), Statistics in Medicine 17:857, table I, method 3.
    for (successes, trials), (low, high) in {
        (81, 263): (0.2553, 0.3662),
        (15, 148): (0.0624, 0.1605),
        (0, 20): (0.0, 0.1611),
        (1, 29): (0.0061, 0.1718),
    }.items():
        interval = wilson_interval(Counts(successes, trials))
        assert round(interval.low, 4) == low
        assert round(interval.high, 4) == high


def test_relative_lift_and_its_log_ratio_interval() -> None:
    lift = relative_lift(Counts(12, 99), Counts(5, 83))
    assert lift.estimate == pytest.approx((12 / 99) / (5 / 83) - 1)
    assert lift.interval is not None
    # exp(ln RR ± 1.96 * sqrt(1/12 - 1/99 + 1/5 - 1/83)) - 1, worked by hand.
    assert lift.interval.low == pytest.approx(-0.2610, abs=1e-4)
    assert lift.interval.high == pytest.approx(4.4786, abs=1e-4)


def test_lift_is_undefined_without_control_replies_and_finite_without_variant_ones() -> None:
    assert relative_lift(Counts(4, 50), Counts(0, 50)).estimate is None
    lift = relative_lift(Counts(0, 50), Counts(4, 50))
    assert lift.estimate == -1.0
    assert lift.interval is not None
    assert -1.0 < lift.interval.low < 0.0 < lift.interval.high  # finite and spans no effect


def test_chance_to_beat_is_exact_against_numerical_integration() -> None:
    first, second = Counts(12, 99), Counts(5, 83)

    def density(x: float) -> float:
        win = sps.beta.pdf(x, 13, 88) * sps.beta.cdf(x, 6, 79)
        return float(win)

    expected, _ = integrate.quad(density, 0.0, 1.0, epsabs=1e-12)
    assert chance_to_beat(first, second) == pytest.approx(expected, abs=1e-9)
    assert chance_to_beat(first, second) + chance_to_beat(second, first) == pytest.approx(1.0)
    assert chance_to_beat(Counts(0, 10), Counts(0, 10)) == pytest.approx(0.5)


def test_chance_to_beat_agrees_with_simulation_to_half_a_point() -> None:
    first, second = Counts(300, 1000), Counts(280, 1000)
    rng = np.random.default_rng(20250106)
    draws = 400_000  # standard error about 0.0007, so 0.005 is over six of them
    first_draws = rng.beta(301, 701, draws)
    second_draws = rng.beta(281, 721, draws)
    simulated = float((first_draws > second_draws).mean())
    assert abs(chance_to_beat(first, second) - simulated) < 0.005


def test_holm_adjusted_p_values_on_a_worked_example() -> None:
    # Sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 -> held at 0.06.
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx((0.03, 0.06, 0.06, 0.02))
    assert holm_adjust([0.2]) == (0.2,)
    assert holm_adjust([0.6, 0.7]) == (1.0, 1.0)


def test_no_replies_anywhere_is_no_evidence_rather_than_an_error() -> None:
    assert two_proportion_z_test(Counts(0, 10), Counts(0, 12)).p_value == 1.0
    assert chi_square_test(((0, 10), (0, 12)), yates=False).p_value == 1.0


@pytest.mark.parametrize(("successes", "trials"), [(1, 0), (11, 10), (-1, 5)])
def test_impossible_counts_are_rejected(successes: int, trials: int) -> None:
    with pytest.raises(InvalidCounts):
        Counts(successes, trials)
