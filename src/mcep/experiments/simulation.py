"""Seeded simulations that show the experiment statistics keep their promises.

Two questions, each answerable in a second or two:

* A/A peeking: with identical arms, looked at after every few messages, how often does a test
  ever cry "significant"? The naive fixed-sample z-test does so far more often than its alpha;
  the always-valid test must not. All runs are simulated at once as numpy arrays.
* Test-then-send: with genuinely different arms, how often does :func:`decide` pick the right
  winner within the test cells, and what does the remainder get?
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from scipy import stats as sps

from mcep.experiments.decision import (
    ArmTally,
    Continue,
    Decision,
    NoWinner,
    SplitTestPlan,
    Winner,
    decide,
)
from mcep.experiments.sequential import DEFAULT_TAU, log_likelihood_ratio
from mcep.experiments.stats import FloatArray, pooled_z

# Simulated campaigns start here; plans for them set their deadline relative to it.
SIMULATION_START = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class PeekingResult:
    """Share of A/A runs in which each test was ever significant at any look."""

    runs: int
    looks: int
    sequential_false_positive_rate: float
    naive_false_positive_rate: float


@dataclass(frozen=True, slots=True)
class SimulatedArm:
    """An arm's true rates, which the simulation knows and the decision must discover."""

    name: str
    reply_rate: float
    opt_out_rate: float = 0.0


@dataclass(frozen=True, slots=True)
class SplitTestRun:
    """One simulated campaign: how the test ended and what the remainder got."""

    decision: Winner | NoWinner
    test_sends_per_arm: int
    remainder: int
    remainder_replies: int


@dataclass(frozen=True, slots=True)
class SplitTestSummary:
    """All runs of one test-then-send scenario and the arm that truly is best."""

    runs: tuple[SplitTestRun, ...]
    best_arm: str

    @property
    def correct_winner_rate(self) -> float:
        """Share of runs that declared the truly best arm a significant winner."""
        hits = [
            isinstance(run.decision, Winner) and run.decision.arm == self.best_arm
            for run in self.runs
        ]
        return float(np.mean(hits))

    @property
    def mean_test_sends_per_arm(self) -> float:
        return float(np.mean([run.test_sends_per_arm for run in self.runs]))


def simulate_aa_peeking(
    *,
    rate: float,
    seed: int,
    runs: int = 2000,
    messages: int = 1000,
    look_every: int = 10,
    alpha: float = 0.05,
    tau: float = DEFAULT_TAU,
) -> PeekingResult:
    """Run ``runs`` A/A experiments, each prospect hashed 50/50, looked at every few messages."""
    rng = np.random.default_rng(seed)
    to_variant = rng.random((runs, messages)) < 0.5
    replied = rng.random((runs, messages)) < rate
    looks = np.arange(look_every - 1, messages, look_every)
    n_v = np.cumsum(to_variant, axis=1)[:, looks].astype(np.float64)
    s_v = np.cumsum(to_variant & replied, axis=1)[:, looks].astype(np.float64)
    n_c = (looks + 1) - n_v
    s_c = np.cumsum(~to_variant & replied, axis=1)[:, looks].astype(np.float64)
    # A look before both arms have a message says nothing; give it harmless counts.
    ready = (n_v > 0) & (n_c > 0)
    n_v, n_c = np.where(ready, n_v, 1.0), np.where(ready, n_c, 1.0)
    log_ratio = log_likelihood_ratio(s_v, n_v, s_c, n_c, tau=tau)
    naive_p: FloatArray = 2.0 * sps.norm.sf(np.abs(pooled_z(s_v, n_v, s_c, n_c)))
    return PeekingResult(
        runs=runs,
        looks=len(looks),
        sequential_false_positive_rate=_ever(ready & (log_ratio >= np.log(1.0 / alpha))),
        naive_false_positive_rate=_ever(ready & (naive_p <= alpha)),
    )


def simulate_split_test(
    arms: Sequence[SimulatedArm],
    *,
    plan: SplitTestPlan,
    audience_size: int,
    seed: int,
    runs: int = 1000,
    look_every: int = 10,
    look_interval: timedelta = timedelta(hours=1),
) -> SplitTestSummary:
    """Run test-then-send campaigns; ``arms[0]`` is control, the clock starts at SIMULATION_START.

    Each look sends ``look_every`` more messages per arm, advances the clock by
    ``look_interval`` and asks :func:`decide`; the remainder then goes to the chosen arm.
    """
    if audience_size < len(arms) * plan.test_cell_size:
        raise ValueError("the audience is smaller than the test cells")
    rng = np.random.default_rng(seed)
    outcomes = [
        _run_once(arms, plan, audience_size, rng, look_every, look_interval) for _ in range(runs)
    ]
    best = max(arms, key=lambda arm: arm.reply_rate).name
    return SplitTestSummary(runs=tuple(outcomes), best_arm=best)


def _run_once(
    arms: Sequence[SimulatedArm],
    plan: SplitTestPlan,
    audience_size: int,
    rng: np.random.Generator,
    look_every: int,
    look_interval: timedelta,
) -> SplitTestRun:
    cell = plan.test_cell_size
    replies = rng.random((len(arms), cell)) < np.array([[a.reply_rate] for a in arms])
    opt_outs = rng.random((len(arms), cell)) < np.array([[a.opt_out_rate] for a in arms])
    sent, now, decision = 0, SIMULATION_START, _first_decision(arms, plan)
    while isinstance(decision, Continue):
        sent, now = min(sent + look_every, cell), now + look_interval
        tallies = [
            ArmTally(arm.name, sent, int(replies[i, :sent].sum()), int(opt_outs[i, :sent].sum()))
            for i, arm in enumerate(arms)
        ]
        decision = decide(tallies, plan, now=now)
    remainder = audience_size - len(arms) * sent
    chosen = next(arm for arm in arms if arm.name == decision.arm)
    return SplitTestRun(
        decision=decision,
        test_sends_per_arm=sent,
        remainder=remainder,
        remainder_replies=int(rng.binomial(remainder, chosen.reply_rate)),
    )


def _first_decision(arms: Sequence[SimulatedArm], plan: SplitTestPlan) -> Decision:
    # Before anything is sent the only possible answer is a deadline already passed.
    return decide([ArmTally(arm.name, 0, 0) for arm in arms], plan, now=SIMULATION_START)


def _ever(hits: np.ndarray[tuple[int, int], np.dtype[np.bool_]]) -> float:
    return float(hits.any(axis=1).mean())
