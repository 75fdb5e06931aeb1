"""Input and output shapes of the experiments API, and the results every view shows.

The results models are plain values built by the pure :func:`mcep.experiments.results.
build_results`, so any view (REST today, GraphQL later) serves the same numbers.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, Field, StringConstraints, field_validator

from mcep.api.schemas import StrictModel
from mcep.contacts.models import Channel
from mcep.experiments.decision import Fallback
from mcep.experiments.design import ExperimentStatus, Metric, Mode

Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
ArmName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
WEEK_MINUTES = 7 * 24 * 60


class ArmIn(StrictModel):
    """One arm: a template, its share of the traffic, and optionally its own timing and
    channel preference (channels it prefers first, among those the prospect can use)."""

    name: ArmName
    template_id: uuid.UUID
    weight: float = Field(default=1.0, gt=0, le=1000)
    send_offset_minutes: int = Field(default=0, ge=0, le=WEEK_MINUTES)
    channel_order: list[Channel] = Field(default_factory=list, max_length=4)

    @field_validator("channel_order")
    @classmethod
    def _channels_once(cls, value: list[Channel]) -> list[Channel]:
        if len(set(value)) != len(value):
            raise ValueError("channels must not repeat")
        return value


class Guardrail(StrictModel):
    """An arm whose opt-out rate is above ``max_rate`` can never be declared the winner."""

    metric: Literal["opt_out_rate"] = "opt_out_rate"
    max_rate: float = Field(default=0.05, ge=0, le=1)


class ExperimentCreate(StrictModel):
    """An experiment on a draft campaign; its arms replace the campaign's variants.

    ``mode``: ``fixed`` sends every arm at launch; ``test_then_send`` sends the test fraction,
    then the winner to the rest; ``thompson`` sends the test fraction, then the rest in
    batches allocated by Thompson sampling.
    """

    campaign_id: uuid.UUID
    name: Name | None = None
    variants: list[ArmIn] = Field(min_length=2, max_length=10)
    control: ArmName | None = None
    holdout: float = Field(default=0.0, ge=0, le=0.5)
    metric: Metric = Metric.REPLY_RATE
    guardrail: Guardrail | None = Field(default_factory=Guardrail)
    alpha: float = Field(default=0.05, gt=0, le=0.2)
    mode: Mode = Mode.FIXED
    test_fraction: float | None = Field(default=None, gt=0, lt=1)
    deadline: AwareDatetime | None = None
    deadline_hours: float | None = Field(default=None, gt=0, le=30 * 24)
    fallback: Fallback = Fallback.CONTROL
    min_share: float | None = Field(default=None, ge=0, le=0.5)
    batch_minutes: int | None = Field(default=None, ge=1, le=WEEK_MINUTES)


class ArmOut(BaseModel):
    name: str
    template_id: uuid.UUID
    weight: float
    send_offset_minutes: int
    channel_order: list[Channel]


class ExperimentOut(BaseModel):
    id: uuid.UUID
    pm_id: uuid.UUID
    campaign_id: uuid.UUID
    name: str
    mode: Mode
    status: ExperimentStatus
    control: str
    variants: list[ArmOut]
    holdout: float
    metric: Metric
    guardrail: Guardrail | None
    alpha: float
    test_fraction: float | None
    deadline: datetime | None
    deadline_hours: float | None
    fallback: Fallback
    min_share: float | None
    batch_minutes: int | None
    launched_at: datetime | None
    decided_at: datetime | None
    winner: str | None
    decision: dict[str, Any]
    created_at: datetime
    updated_at: datetime


# --- results -------------------------------------------------------------------------------


class IntervalOut(BaseModel):
    low: float
    high: float
    confidence: float


class TestOut(BaseModel):
    """One significance test of a variant against control."""

    statistic: float | None
    p_value: float


class LiftOut(BaseModel):
    """Relative lift ``rate / baseline - 1``; undefined while the baseline has no successes."""

    estimate: float | None
    interval: IntervalOut | None


class ArmResult(BaseModel):
    """One arm's test cohort: who was assigned, who was sent to, and the primary metric."""

    name: str
    control: bool
    assigned: int
    sent: int
    successes: int
    rate: float | None
    interval: IntervalOut | None
    opt_outs: int
    opt_out_rate: float | None
    guardrail_ok: bool


class SequentialOut(BaseModel):
    """The always-valid test (mSPRT): valid however often the results are looked at."""

    p_value: float
    holm_p_value: float
    likelihood_ratio: float
    significant: bool
    difference: float
    interval: IntervalOut


class ComparisonResult(BaseModel):
    """A variant against control; differences are variant minus control."""

    arm: str
    difference: float
    z_test: TestOut
    chi_square: TestOut
    chi_square_yates: TestOut
    fisher: TestOut
    fisher_odds_ratio: float | None
    selected_test: Literal["chi_square", "fisher"]
    p_value: float
    holm_p_value: float
    lift: LiftOut
    chance_to_beat_control: float
    sequential: SequentialOut


class HoldoutResult(BaseModel):
    """The hold-out received nothing; its rate is the metric's events among its members."""

    assigned: int
    successes: int
    rate: float | None
    interval: IntervalOut | None


class HoldoutLift(BaseModel):
    arm: str
    lift: LiftOut
    p_value: float


class SrmResult(BaseModel):
    """Sample ratio check: observed group sizes against the design's shares."""

    statistic: float
    p_value: float
    mismatch: bool
    threshold: float
    observed: dict[str, int]
    expected_share: dict[str, float]


class ArmEvidenceOut(BaseModel):
    name: str
    sent: int
    successes: int
    rate: float
    opt_out_rate: float
    guardrail_ok: bool
    p_value: float | None
    likelihood_ratio: float | None


class DecisionOut(BaseModel):
    """Test-then-send: ``testing`` until a winner or the deadline; ``recorded`` once the
    worker has acted on it (and released the remainder)."""

    state: Literal["testing", "winner", "no_winner"]
    arm: str | None
    reason: str | None
    recorded: bool
    decided_at: datetime | None
    deadline: datetime | None
    held_by_guardrail: list[str]
    evidence: list[ArmEvidenceOut]


class RolloutResult(BaseModel):
    """The remainder held back at launch: how much was released, to which arms."""

    held: int
    released: int
    by_arm: dict[str, int]
    sent: int
    successes: int
    rate: float | None


class ExperimentResults(BaseModel):
    experiment_id: uuid.UUID
    status: ExperimentStatus
    mode: Mode
    metric: Metric
    higher_is_better: bool
    alpha: float
    as_of: datetime
    arms: list[ArmResult]
    comparisons: list[ComparisonResult]
    holdout: HoldoutResult | None
    lift_vs_holdout: list[HoldoutLift]
    srm: SrmResult | None
    decision: DecisionOut | None
    rollout: RolloutResult | None
    notes: list[str]
