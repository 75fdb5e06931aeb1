"""Which arm a prospect gets: deterministic, weighted, with an optional hold-out.

Assignment is a pure function of the experiment id and the prospect id, so a relaunched
campaign, a retried job or a second worker all put a prospect in the same arm without any
shared state. The hold-out decision and the arm choice use separately salted hashes: changing
the hold-out share moves prospects in or out of the hold-out without reshuffling the arms of
everyone else.

Thompson-sampling allocation produces new weights from the results so far. Weights that move
do change where *unsent* prospects land, so the dispatch engine records each prospect's arm
at first send and never re-assigns it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mcep.experiments.stats import Counts

_HOLDOUT_SALT = "holdout"
_ARM_SALT = "arm"
# 2**64 buckets: the uniform draw is exact to far below any share anyone would configure.
_BUCKETS = float(2**64)


@dataclass(frozen=True, slots=True)
class Arm:
    """One arm of an experiment and its relative traffic weight (0 pauses the arm)."""

    name: str
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.weight >= 0:
            raise ValueError(f"arm {self.name!r} needs a weight of 0 or more, got {self.weight}")


@dataclass(frozen=True, slots=True)
class Assignment:
    """Where a prospect landed: an arm, or the hold-out that receives nothing."""

    arm: str | None

    @property
    def held_out(self) -> bool:
        return self.arm is None


def unit_hash(*parts: str) -> float:
    """A uniform number in [0, 1) fixed by ``parts``, the same on every machine and run."""
    # Length-prefixed, so ("ab", "c") and ("a", "bc") can never hash alike.
    encoded = "".join(f"{len(part)}:{part}" for part in parts)
    digest = hashlib.sha256(encoded.encode()).digest()
    return int.from_bytes(digest[:8], "big") / _BUCKETS


def assign(
    experiment_id: str, prospect_id: str, arms: Sequence[Arm], *, holdout: float = 0.0
) -> Assignment:
    """Assign a prospect to an arm in proportion to the weights, after the hold-out."""
    total = _total_weight(arms)
    if not 0.0 <= holdout < 1.0:
        raise ValueError(f"holdout must be in [0, 1), got {holdout}")
    if unit_hash(_HOLDOUT_SALT, experiment_id, prospect_id) < holdout:
        return Assignment(arm=None)
    point = unit_hash(_ARM_SALT, experiment_id, prospect_id) * total
    cumulative = 0.0
    for arm in arms:
        cumulative += arm.weight
        if point < cumulative:
            return Assignment(arm=arm.name)
    # Only reachable through float rounding at the very top of the range.
    return Assignment(arm=next(arm.name for arm in reversed(arms) if arm.weight > 0))


def _total_weight(arms: Sequence[Arm]) -> float:
    if len({arm.name for arm in arms}) != len(arms):
        raise ValueError("arm names must be unique")
    total = sum(arm.weight for arm in arms)
    if total <= 0:
        raise ValueError("an experiment needs at least one arm with a positive weight")
    return total


def thompson_shares(
    arms: Sequence[Counts | None],
    *,
    min_share: float,
    rng: np.random.Generator,
    draws: int = 20_000,
) -> tuple[float, ...]:
    """Traffic shares in proportion to each arm's posterior chance of being best.

    Beta(1, 1) priors; ``None`` is an arm with no sends yet. Every arm keeps at least
    ``min_share`` so a variant that starts unlucky still gathers the data to recover, and so
    the fixed-sample statistics keep enough trials per arm to mean something.
    """
    if len(arms) < 2:
        raise ValueError("Thompson allocation needs at least two arms")
    if not 0.0 <= min_share * len(arms) <= 1.0:
        raise ValueError(f"min_share {min_share} is impossible with {len(arms)} arms")
    successes = np.array([a.successes if a else 0 for a in arms], dtype=np.float64)
    failures = np.array([a.failures if a else 0 for a in arms], dtype=np.float64)
    samples = rng.beta(successes + 1.0, failures + 1.0, size=(draws, len(arms)))
    chance_best = np.bincount(samples.argmax(axis=1), minlength=len(arms)) / draws
    shares = min_share + (1.0 - min_share * len(arms)) * chance_best
    return tuple(float(share) for share in shares)
