"""An experiment's design as values: its arms, cohorts, metric and what the SRM check expects.

A prospect lands in one of three cohorts, decided by salted hashes of the experiment and the
prospect alone (see :mod:`mcep.experiments.assignment`), so a relaunch puts everyone back
where they were:

* ``holdout``: receives nothing; measured to show the lift over doing nothing;
* ``test``: receives its arm's message at launch (everyone outside the hold-out in a fixed
  experiment, the test fraction in test-then-send and Thompson experiments);
* ``remainder``: held at launch and sent later, with the winner or by Thompson allocation.

The arm is drawn for every prospect, whatever their cohort, so changing the test fraction
moves prospects between test and remainder without reshuffling anyone's arm.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from mcep.experiments.assignment import Arm, assign, unit_hash
from mcep.experiments.decision import Fallback, SplitTestPlan
from mcep.experiments.sequential import DEFAULT_TAU

_TEST_SALT = "test"
# The real flow ends a test at significance or the deadline; replies to the last test
# messages keep arriving after they are sent, so "every test message sent" is no reason to
# stop looking (it is in the simulation, where replies are instant).
_NEVER_FULL = 2**62
HOLDOUT_GROUP = "holdout"
REMAINDER_GROUP = "remainder"
RESERVED_NAMES = frozenset({HOLDOUT_GROUP, REMAINDER_GROUP})


class ExperimentStatus(enum.StrEnum):
    DRAFT = "draft"  # its campaign has not been launched yet
    RUNNING = "running"
    COMPLETED = "completed"  # decided and rolled out, or every batch sent
    CANCELLED = "cancelled"  # its campaign was cancelled


class Mode(enum.StrEnum):
    """How the audience is sent to: all arms at once, a test then the winner, or adaptively."""

    FIXED = "fixed"
    TEST_THEN_SEND = "test_then_send"
    THOMPSON = "thompson"


class Metric(enum.StrEnum):
    """The outcome an experiment is judged on; each counts messages sent that led to it."""

    REPLY_RATE = "reply_rate"
    READ_RATE = "read_rate"
    OPT_OUT_RATE = "opt_out_rate"
    QUALIFIED_RATE = "qualified_rate"

    @property
    def higher_is_better(self) -> bool:
        return self is not Metric.OPT_OUT_RATE


class Cohort(enum.StrEnum):
    TEST = "test"
    HOLDOUT = "holdout"
    REMAINDER = "remainder"


@dataclass(frozen=True, slots=True)
class Allocation:
    """Where one prospect landed; ``arm`` is ``None`` in the hold-out and the remainder."""

    cohort: Cohort
    arm: str | None


def allocate(
    key: str,
    prospect_id: str,
    arms: Sequence[Arm],
    *,
    holdout: float = 0.0,
    test_fraction: float = 1.0,
) -> Allocation:
    """The prospect's cohort and, in the test cohort, its arm (weighted)."""
    if not 0.0 < test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be in (0, 1], got {test_fraction}")
    drawn = assign(key, prospect_id, arms, holdout=holdout)
    if drawn.held_out:
        return Allocation(Cohort.HOLDOUT, None)
    if test_fraction < 1.0 and unit_hash(_TEST_SALT, key, prospect_id) >= test_fraction:
        return Allocation(Cohort.REMAINDER, None)
    return Allocation(Cohort.TEST, drawn.arm)


@dataclass(frozen=True, slots=True)
class ExperimentDesign:
    """Everything the statistics need to know about an experiment; ``arms[0]`` is control."""

    arms: tuple[str, ...]
    weights: tuple[float, ...]
    metric: Metric = Metric.REPLY_RATE
    alpha: float = 0.05
    holdout: float = 0.0
    mode: Mode = Mode.FIXED
    test_fraction: float = 1.0
    max_opt_out_rate: float | None = None
    fallback: Fallback = Fallback.CONTROL
    tau: float = DEFAULT_TAU

    def __post_init__(self) -> None:
        if len(self.arms) < 2 or len(set(self.arms)) != len(self.arms):
            raise ValueError("an experiment needs at least two arms with unique names")
        if len(self.weights) != len(self.arms) or not all(w > 0 for w in self.weights):
            raise ValueError("every arm needs a positive weight")

    @property
    def control(self) -> str:
        return self.arms[0]

    def groups(self) -> tuple[tuple[str, float], ...]:
        """Each assignment group and the share of the eligible audience it should get.

        Arms share the test cohort by weight; the hold-out and (when the design holds one
        back) the remainder are groups of their own. The sample ratio check compares the
        observed group sizes with these shares.
        """
        total = sum(self.weights)
        treated = 1.0 - self.holdout
        shares = [(arm, treated * self.test_fraction * w / total) for arm, w in self._arm_weights()]
        if self.holdout > 0:
            shares.append((HOLDOUT_GROUP, self.holdout))
        if self.test_fraction < 1.0:
            shares.append((REMAINDER_GROUP, treated * (1.0 - self.test_fraction)))
        return tuple(shares)

    def _arm_weights(self) -> list[tuple[str, float]]:
        return list(zip(self.arms, self.weights, strict=True))

    def split_plan(self, deadline: datetime) -> SplitTestPlan:
        """The rules of the test phase, for :func:`mcep.experiments.decision.decide`."""
        ceiling = 1.0 if self.max_opt_out_rate is None else self.max_opt_out_rate
        return SplitTestPlan(
            test_cell_size=_NEVER_FULL,
            deadline=deadline,
            max_opt_out_rate=ceiling,
            alpha=self.alpha,
            fallback=self.fallback,
            tau=self.tau,
        )
