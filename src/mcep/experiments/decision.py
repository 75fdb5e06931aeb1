"""Test-then-send: decide from the test cells which arm the rest of the audience gets.

A campaign sends each arm to a small test cell (say 20% of the audience split between the
arms), looks at the results after every batch, and sends the remainder with the winner. The
decision is a pure function of the counts so far, the plan and the clock:

* an arm wins as soon as the always-valid test (:mod:`mcep.experiments.sequential`, Holm
  adjusted over the variants) separates it from control at the plan's alpha *and* its opt-out
  rate is within the guardrail, since any look may be the last;
* when the deadline passes or the test cells are used up without a winner, the remainder goes
  to the plan's fallback: control (the safe choice) or the best-looking arm within the
  guardrail (the greedy one);
* otherwise, keep testing.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from mcep.experiments.sequential import DEFAULT_TAU, msprt
from mcep.experiments.stats import Counts, holm_adjust


class Fallback(enum.StrEnum):
    """Which arm the remainder gets when the test ends without a winner."""

    CONTROL = "control"
    BEST = "best"


class Reason(enum.StrEnum):
    """Why the test phase ended."""

    SIGNIFICANT = "significant"
    DEADLINE = "deadline"
    TEST_CELLS_FULL = "test_cells_full"


@dataclass(frozen=True, slots=True)
class ArmTally:
    """What one arm's test cell has produced so far."""

    name: str
    sent: int
    replies: int
    opt_outs: int = 0

    def __post_init__(self) -> None:
        if self.sent < 0 or not 0 <= self.replies <= self.sent:
            raise ValueError(f"arm {self.name!r}: need 0 <= replies <= sent")
        if not 0 <= self.opt_outs <= self.sent:
            raise ValueError(f"arm {self.name!r}: need 0 <= opt_outs <= sent")

    @property
    def reply_rate(self) -> float:
        return self.replies / self.sent if self.sent else 0.0

    @property
    def opt_out_rate(self) -> float:
        return self.opt_outs / self.sent if self.sent else 0.0


@dataclass(frozen=True, slots=True)
class SplitTestPlan:
    """The rules a campaign's test phase runs under.

    ``test_cell_size`` is the number of messages per arm in the test phase (see
    :func:`cell_size`); ``max_opt_out_rate`` is the guardrail: an arm whose observed
    opt-out rate is above it can never be declared the winner.
    """

    test_cell_size: int
    deadline: datetime
    max_opt_out_rate: float
    alpha: float = 0.05
    fallback: Fallback = Fallback.CONTROL
    tau: float = DEFAULT_TAU

    def __post_init__(self) -> None:
        if self.test_cell_size <= 0:
            raise ValueError("test_cell_size must be positive")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError("alpha must be between 0 and 1")
        if not 0.0 <= self.max_opt_out_rate <= 1.0:
            raise ValueError("max_opt_out_rate must be between 0 and 1")


@dataclass(frozen=True, slots=True)
class ArmEvidence:
    """The numbers behind a decision for one arm.

    ``p_value`` and ``likelihood_ratio`` compare the arm with control (``None`` for control
    itself); the p-value is always-valid and Holm adjusted over the variants.
    """

    name: str
    sent: int
    replies: int
    reply_rate: float
    opt_out_rate: float
    guardrail_ok: bool
    p_value: float | None
    likelihood_ratio: float | None


@dataclass(frozen=True, slots=True)
class Continue:
    """Keep testing; ``held_by_guardrail`` names arms that would have won but for opt-outs."""

    evidence: tuple[ArmEvidence, ...]
    held_by_guardrail: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Winner:
    """Send the remainder with ``arm``: it is significantly better at the plan's alpha."""

    arm: str
    reason: Reason
    evidence: tuple[ArmEvidence, ...]


@dataclass(frozen=True, slots=True)
class NoWinner:
    """The test ran out of time or messages; send the remainder with the fallback ``arm``."""

    arm: str
    reason: Reason
    fallback: Fallback
    evidence: tuple[ArmEvidence, ...]


Decision = Continue | Winner | NoWinner


def cell_size(audience_size: int, *, test_fraction: float, arms: int) -> int:
    """Messages per arm in the test phase: the test fraction of the audience, split evenly."""
    if not 0.0 < test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be in (0, 1], got {test_fraction}")
    if arms < 2 or audience_size < arms:
        raise ValueError("need at least two arms and one prospect per arm")
    return max(1, math.floor(audience_size * test_fraction / arms))


def decide(arms: Sequence[ArmTally], plan: SplitTestPlan, *, now: datetime) -> Decision:
    """Decide the test phase's next step; ``arms[0]`` is control."""
    evidence = weigh_evidence(arms, plan)
    winner, held = _significant_winner(evidence, alpha=plan.alpha)
    if winner is not None:
        return Winner(arm=winner, reason=Reason.SIGNIFICANT, evidence=evidence)
    if now >= plan.deadline:
        reason = Reason.DEADLINE
    elif all(arm.sent >= plan.test_cell_size for arm in arms):
        reason = Reason.TEST_CELLS_FULL
    else:
        return Continue(evidence=evidence, held_by_guardrail=held)
    arm = _fallback_arm(evidence, plan.fallback)
    return NoWinner(arm=arm, reason=reason, fallback=plan.fallback, evidence=evidence)


def weigh_evidence(arms: Sequence[ArmTally], plan: SplitTestPlan) -> tuple[ArmEvidence, ...]:
    """Compare every variant with control by the always-valid test, Holm adjusted."""
    if len(arms) < 2 or len({arm.name for arm in arms}) != len(arms):
        raise ValueError("need a control and at least one variant, with unique names")
    control, variants = arms[0], arms[1:]
    ratios = [_likelihood_ratio(variant, control, plan) for variant in variants]
    adjusted = holm_adjust([min(1.0, 1.0 / ratio) for ratio in ratios])
    return (
        _evidence(control, plan, p_value=None, ratio=None),
        *(
            _evidence(variant, plan, p_value=p, ratio=ratio)
            for variant, p, ratio in zip(variants, adjusted, ratios, strict=True)
        ),
    )


def _likelihood_ratio(variant: ArmTally, control: ArmTally, plan: SplitTestPlan) -> float:
    if variant.sent == 0 or control.sent == 0:
        return 1.0
    first, second = Counts(variant.replies, variant.sent), Counts(control.replies, control.sent)
    return msprt(first, second, alpha=plan.alpha, tau=plan.tau).likelihood_ratio


def _evidence(
    arm: ArmTally, plan: SplitTestPlan, *, p_value: float | None, ratio: float | None
) -> ArmEvidence:
    return ArmEvidence(
        name=arm.name,
        sent=arm.sent,
        replies=arm.replies,
        reply_rate=arm.reply_rate,
        opt_out_rate=arm.opt_out_rate,
        guardrail_ok=arm.opt_out_rate <= plan.max_opt_out_rate,
        p_value=p_value,
        likelihood_ratio=ratio,
    )


def _significant_winner(
    evidence: tuple[ArmEvidence, ...], *, alpha: float
) -> tuple[str | None, tuple[str, ...]]:
    """The winning arm, if any, and the arms that won on replies but breach the guardrail.

    A variant wins when it is significantly better than control; among several, the highest
    observed rate (they are not tested against each other, but each is proven better than
    control). Control wins when every variant is significantly worse.
    """
    control, variants = evidence[0], evidence[1:]
    better = [v for v in variants if _separated(v, alpha) and v.reply_rate > control.reply_rate]
    worse = [v for v in variants if _separated(v, alpha) and v.reply_rate < control.reply_rate]
    candidates = [v for v in better if v.guardrail_ok]
    held = [v.name for v in better if not v.guardrail_ok]
    if candidates:
        return max(candidates, key=lambda v: v.reply_rate).name, tuple(held)
    if not better and len(worse) == len(variants):
        if control.guardrail_ok:
            return control.name, ()
        return None, (control.name,)
    return None, tuple(held)


def _separated(arm: ArmEvidence, alpha: float) -> bool:
    return arm.p_value is not None and arm.p_value <= alpha


def _fallback_arm(evidence: tuple[ArmEvidence, ...], fallback: Fallback) -> str:
    control = evidence[0]
    if fallback is Fallback.CONTROL:
        return control.name
    eligible = [arm for arm in evidence if arm.guardrail_ok and arm.sent > 0]
    return max(eligible, key=lambda arm: arm.reply_rate).name if eligible else control.name
