"""Tables of the experiments domain: experiments, their arms, and who was assigned where."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mcep.db.base import Base, TimestampMixin, str_enum, utcnow
from mcep.experiments.decision import Fallback
from mcep.experiments.design import Cohort, ExperimentStatus, Metric, Mode


class Experiment(TimestampMixin, Base):
    """An A/B experiment on one campaign.

    The campaign's variants mirror the arms (name, template, weight), so the campaign shows
    what will be sent. ``deadline`` is set at launch from ``deadline_hours`` when the test
    phase was given a duration rather than a time. ``decision`` keeps the recorded decision
    (with the numbers behind it) or, in Thompson mode, the batches released so far.
    """

    __tablename__ = "experiments"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    pm_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("portfolio_managers.id", ondelete="RESTRICT"), index=True
    )
    campaign_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), unique=True
    )
    name: Mapped[str] = mapped_column(String(200))
    mode: Mapped[Mode] = mapped_column(str_enum(Mode))
    status: Mapped[ExperimentStatus] = mapped_column(
        str_enum(ExperimentStatus), default=ExperimentStatus.DRAFT, index=True
    )
    control: Mapped[str] = mapped_column(String(64))
    metric: Mapped[Metric] = mapped_column(str_enum(Metric))
    max_opt_out_rate: Mapped[float | None]
    alpha: Mapped[float]
    holdout: Mapped[float] = mapped_column(default=0.0)
    test_fraction: Mapped[float | None]
    deadline: Mapped[datetime | None]
    deadline_hours: Mapped[float | None]
    fallback: Mapped[Fallback] = mapped_column(str_enum(Fallback), default=Fallback.CONTROL)
    min_share: Mapped[float | None]
    batch_minutes: Mapped[int | None]
    launched_at: Mapped[datetime | None]
    decided_at: Mapped[datetime | None]
    winner: Mapped[str | None] = mapped_column(String(64))
    decision: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    arms: Mapped[list[ExperimentArm]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="ExperimentArm.position"
    )


class ExperimentArm(Base):
    """One arm: its template and weight (mirrored on the campaign), when it sends relative to
    the campaign's start, and the channels it prefers (empty: the profile's order)."""

    __tablename__ = "experiment_arms"

    experiment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int]
    template_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("templates.id", ondelete="RESTRICT"), index=True
    )
    weight: Mapped[float]
    send_offset_minutes: Mapped[int] = mapped_column(default=0)
    channel_order: Mapped[list[str]] = mapped_column(JSON, default=list)


class ExperimentAssignment(Base):
    """Where one prospect landed in one experiment: written at launch for the test cohort,
    the hold-out and the held remainder, so every group's outcomes can be counted.

    ``arm`` is ``None`` in the hold-out, and in the remainder until it is released;
    ``outcome`` says what the release did (``queued`` or the reason it was skipped).
    """

    __tablename__ = "experiment_assignments"
    __table_args__ = (Index("ix_experiment_assignments_group", "experiment_id", "cohort", "arm"),)

    experiment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True
    )
    prospect_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("prospects.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    cohort: Mapped[Cohort] = mapped_column(str_enum(Cohort))
    arm: Mapped[str | None] = mapped_column(String(64))
    assigned_at: Mapped[datetime]
    released_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(32))
