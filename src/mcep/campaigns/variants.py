"""Which variant each recipient of a launch gets: a pure function of the assignment key and
the prospect, through :mod:`mcep.experiments.assignment`.

A campaign without an experiment keys the hash on its own id; a campaign under an experiment
keys it on the experiment's id and adds the experiment's design: the hold-out (sent nothing),
the remainder held for the winner, and each arm's send-time offset and channel preference.
A relaunch, a retried job or a second worker put every prospect in the same place without
shared state, and the launch records the variant on the message, so later weight changes
never re-assign a prospect already queued.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from mcep.contacts.models import Channel
from mcep.experiments.assignment import Arm, assign
from mcep.experiments.design import Cohort, allocate


@dataclass(frozen=True, slots=True)
class WeightedVariant:
    name: str
    weight: float = 1.0


def assign_variant(
    campaign_id: uuid.UUID, prospect_id: uuid.UUID, variants: Sequence[WeightedVariant]
) -> str:
    """The variant this prospect gets in a campaign without an experiment, by weight."""
    if not variants:
        raise ValueError("a campaign needs at least one variant with a positive weight")
    arms = [Arm(v.name, v.weight) for v in variants]
    arm = assign(str(campaign_id), str(prospect_id), arms).arm
    assert arm is not None  # no hold-out here
    return arm


class ArmSkip(enum.StrEnum):
    """Why an eligible recipient of an experiment gets no message at launch."""

    HOLDOUT = "holdout"  # in the hold-out: never messaged, measured for lift
    HELD = "held_for_winner"  # in the remainder: messaged once the test picks a winner


@dataclass(frozen=True, slots=True)
class ArmSettings:
    """A variant and what it changes besides the template: when it sends, relative to the
    campaign's start, and the channels it tries first."""

    name: str
    weight: float = 1.0
    send_offset: timedelta = timedelta(0)
    channel_order: tuple[Channel, ...] = ()

    def channels(self, usable: Sequence[Channel]) -> tuple[Channel, ...]:
        """The recipient's usable channels, this arm's preferred ones first.

        A preference, never a restriction: who is eligible must not depend on the arm, or
        the arms would stop being comparable.
        """
        first = tuple(c for c in self.channel_order if c in usable)
        return first + tuple(c for c in usable if c not in first)


@dataclass(frozen=True, slots=True)
class VariantChoice:
    """One recipient's place: an arm to send now, or a reason to send nothing now."""

    cohort: Cohort
    arm: ArmSettings | None

    @property
    def skip(self) -> ArmSkip:
        return ArmSkip.HOLDOUT if self.cohort is Cohort.HOLDOUT else ArmSkip.HELD


@dataclass(frozen=True, slots=True)
class VariantPlan:
    """How a launch (or a release of held recipients) assigns variants.

    ``key`` is what the hash is keyed on: the experiment's id, else the campaign's.
    """

    key: str
    arms: tuple[ArmSettings, ...]
    holdout: float = 0.0
    test_fraction: float = 1.0
    experiment_id: uuid.UUID | None = None
    _weighted: tuple[Arm, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.arms or not any(a.weight > 0 for a in self.arms):
            raise ValueError("a campaign needs at least one variant with a positive weight")
        object.__setattr__(self, "_weighted", tuple(Arm(a.name, a.weight) for a in self.arms))

    @classmethod
    def of_campaign(
        cls, campaign_id: uuid.UUID, variants: Sequence[WeightedVariant]
    ) -> VariantPlan:
        return cls(str(campaign_id), tuple(ArmSettings(v.name, v.weight) for v in variants))

    @classmethod
    def only(cls, arm: ArmSettings, *, key: str) -> VariantPlan:
        """Everyone gets ``arm``: the release of a test-then-send remainder to its winner."""
        return cls(key, (ArmSettings(arm.name, 1.0, arm.send_offset, arm.channel_order),))

    def choose(self, prospect_id: uuid.UUID) -> VariantChoice:
        """The recipient's cohort and, when they are sent to now, their arm."""
        allocation = allocate(
            self.key,
            str(prospect_id),
            self._weighted,
            holdout=self.holdout,
            test_fraction=self.test_fraction,
        )
        if allocation.arm is None:
            return VariantChoice(allocation.cohort, None)
        return VariantChoice(
            allocation.cohort, next(a for a in self.arms if a.name == allocation.arm)
        )
