"""An always-valid test for the difference of two reply rates.

PMs refresh results every few minutes. A fixed-sample test read that way is peeked at dozens
of times, and its false-positive rate climbs far above its nominal level. This module uses the
mixture sequential probability ratio test (mSPRT): the likelihood ratio of "the rates differ by
theta" against "they are equal", averaged over a normal prior theta ~ N(0, tau^2). Under the
null that average is a martingale with mean one, so by Ville's inequality the chance it *ever*
reaches 1/alpha is at most alpha, however often and whenever it is looked at.

The observed difference is treated as normal with the variance it would have under the null
(pooled rate), which keeps the test honest at the small counts of early looks; the guarantee is
asymptotic, and the A/A simulations in :mod:`mcep.experiments.simulation` check it holds at
the sample sizes MCEP works with.

Mixing parameter: ``tau`` is the spread of absolute rate differences the test is tuned to
find. With about 100 messages per arm only differences of roughly 15 points or more can be
seen at all, so the default puts the mixture's mass there (``DEFAULT_TAU = 0.15``). In
simulation a smaller tau loses most of its power on 30% vs 60% within 100 messages, and a
larger one loses power on small effects at large samples; in between the test is insensitive
to the exact value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from mcep.experiments.stats import Counts, FloatArray, Interval

DEFAULT_TAU = 0.15


@dataclass(frozen=True, slots=True)
class SequentialTest:
    """The mSPRT of ``first - second`` at the current look.

    ``p_value`` is ``min(1, 1 / likelihood_ratio)``, valid at this look whatever looks came
    before; a caller that keeps history may take the running minimum, which stays valid.
    ``interval`` is the matching confidence sequence for the difference.
    """

    likelihood_ratio: float
    p_value: float
    significant: bool
    difference: float
    interval: Interval
    tau: float


def log_likelihood_ratio(
    s1: npt.ArrayLike,
    n1: npt.ArrayLike,
    s2: npt.ArrayLike,
    n2: npt.ArrayLike,
    *,
    tau: float = DEFAULT_TAU,
) -> FloatArray:
    """Log mixture likelihood ratio, elementwise, so a whole simulation runs in one call.

    Arms that are still empty, or data with no successes or no failures at all, carry no
    evidence: the ratio is 1 (log 0).
    """
    s1, n1, s2, n2 = (np.asarray(a, dtype=np.float64) for a in (s1, n1, s2, n2))
    with np.errstate(divide="ignore", invalid="ignore"):
        pooled = (s1 + s2) / (n1 + n2)
        variance = pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)
        difference = s1 / n1 - s2 / n2
        spread = variance + tau * tau
        log_ratio = 0.5 * np.log(variance / spread) + (
            tau * tau * difference * difference / (2.0 * variance * spread)
        )
    informative = (n1 > 0) & (n2 > 0) & (variance > 0)
    result: FloatArray = np.where(informative, log_ratio, 0.0)
    return result


def msprt(
    first: Counts, second: Counts, *, alpha: float = 0.05, tau: float = DEFAULT_TAU
) -> SequentialTest:
    """Always-valid two-sided test that ``first`` and ``second`` have equal rates."""
    _check_alpha(alpha)
    log_ratio = float(
        log_likelihood_ratio(
            first.successes, first.trials, second.successes, second.trials, tau=tau
        )
    )
    # Capped so an overwhelming result stays a finite number in JSON and tables.
    ratio = math.exp(min(log_ratio, 700.0))
    return SequentialTest(
        likelihood_ratio=ratio,
        p_value=min(1.0, 1.0 / ratio),
        significant=log_ratio >= math.log(1.0 / alpha),
        difference=first.rate - second.rate,
        interval=confidence_sequence(first, second, alpha=alpha, tau=tau),
        tau=tau,
    )


def confidence_sequence(
    first: Counts, second: Counts, *, alpha: float = 0.05, tau: float = DEFAULT_TAU
) -> Interval:
    """Interval for ``rate(first) - rate(second)`` that holds at every look at once.

    It is the set of differences the same normal-mixture test would not reject. The variance
    uses one added success and failure per arm so that an arm with no replies yet still gets
    an honest width instead of zero.
    """
    _check_alpha(alpha)
    variance = _adjusted_variance(first) + _adjusted_variance(second)
    spread = variance + tau * tau
    half = math.sqrt(
        variance
        * spread
        / (tau * tau)
        * (2.0 * math.log(1.0 / alpha) + math.log(spread / variance))
    )
    centre = first.rate - second.rate
    return Interval(max(-1.0, centre - half), min(1.0, centre + half), 1.0 - alpha)


def _adjusted_variance(counts: Counts) -> float:
    rate = (counts.successes + 1) / (counts.trials + 2)
    return rate * (1.0 - rate) / counts.trials


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
