"""Tables of the scoring domain: the model registry, the scoring cursor and each lead's state.

- ``model_versions``: every trained model, immutable once written (artifact and metrics).
- ``model_champions``: the version that scores prospects, per model family and scope; the one
  small table every process polls to notice a promotion or a rollback.
- ``model_promotions``: every promotion in order, so a rollback steps back one at a time.
- ``scoring_cursors``: the last event the scoring job has folded in, advanced in the same
  transaction as the scores it produced.
- ``lead_states``: per prospect, the feature aggregates (so scoring is incremental), the latest
  vector and score, and whether the prospect has qualified.
- ``lead_scores``: the score history. ``lead_feedback``: advisors' verdicts, the training labels.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from mcep.db.base import Base, str_enum, utcnow

BIGINT = BigInteger().with_variant(Integer(), "sqlite")
GLOBAL_SCOPE = "global"


class FeedbackLabel(enum.StrEnum):
    GOOD_LEAD = "good_lead"
    NOT_A_LEAD = "not_a_lead"
    CONVERTED = "converted"
    RESET = "reset"
    """Not a label: lets the prospect qualify again."""


POSITIVE_LABELS = frozenset({FeedbackLabel.GOOD_LEAD, FeedbackLabel.CONVERTED})


class ModelVersion(Base):
    """One trained model: its inputs, where its training rows came from, how it did, its bytes."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    version: Mapped[int]
    features: Mapped[list[str]] = mapped_column(JSON)
    source: Mapped[dict[str, Any]]
    """Training data: a CSV's name and SHA-256, or the feedback window and label counts."""
    metrics: Mapped[dict[str, Any]]
    created_by: Mapped[str] = mapped_column(String(200))
    artifact: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelChampion(Base):
    """The version in charge for a family and scope (``global`` or ``pm:<uuid>``)."""

    __tablename__ = "model_champions"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="RESTRICT"))
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    changed_by: Mapped[str] = mapped_column(String(200))


class ModelPromotion(Base):
    """One promotion; a rollback marks the latest live one rolled back and reinstates the one
    before it, like popping a stack."""

    __tablename__ = "model_promotions"
    __table_args__ = (Index("ix_model_promotions_scope", "name", "scope", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(64))
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="RESTRICT"))
    promoted_at: Mapped[datetime] = mapped_column(default=utcnow)
    promoted_by: Mapped[str] = mapped_column(String(200))
    rolled_back_at: Mapped[datetime | None]
    rolled_back_by: Mapped[str | None] = mapped_column(String(200))


class ScoringCursor(Base):
    """How far a consumer of the event log has got (the last event id it has applied)."""

    __tablename__ = "scoring_cursors"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_event_id: Mapped[int] = mapped_column(BIGINT, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class LeadState(Base):
    """A prospect as a lead: feature aggregates, the latest vector and score, qualification.

    ``qualified_at`` is set once, when the score first reaches the PM's threshold; only an
    advisor's reset clears it.
    """

    __tablename__ = "lead_states"
    __table_args__ = (Index("ix_lead_states_pm_score", "pm_id", "score"),)

    prospect_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("prospects.id", ondelete="CASCADE"), primary_key=True
    )
    pm_id: Mapped[uuid.UUID]
    state: Mapped[dict[str, Any]]
    features: Mapped[dict[str, Any]]
    score: Mapped[float | None] = mapped_column(Float)
    model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL")
    )
    scored_at: Mapped[datetime | None]
    events_seen: Mapped[int] = mapped_column(default=0)
    last_event_id: Mapped[int] = mapped_column(BIGINT, default=0)
    qualified_at: Mapped[datetime | None]
    qualified_score: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class LeadScore(Base):
    """One point of a prospect's score history."""

    __tablename__ = "lead_scores"
    __table_args__ = (Index("ix_lead_scores_prospect_at", "prospect_id", "at"),)

    id: Mapped[int] = mapped_column(BIGINT, primary_key=True, autoincrement=True)
    prospect_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("prospects.id", ondelete="CASCADE"))
    pm_id: Mapped[uuid.UUID]
    at: Mapped[datetime]
    score: Mapped[float] = mapped_column(Float)
    model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL")
    )
    event_id: Mapped[int | None] = mapped_column(BIGINT)
    """The last event folded in before this score (``None`` for a rescore by a new champion)."""


class LeadFeedback(Base):
    """An advisor's verdict on a lead: a training label (or a reset), with the feature vector
    as it stood then, so the label is learnt from what was known at the time.

    The note is personal data: sealed under the prospect's data key, so erasure shreds it.
    """

    __tablename__ = "lead_feedback"
    __table_args__ = (Index("ix_lead_feedback_prospect_at", "prospect_id", "at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    prospect_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("prospects.id", ondelete="CASCADE"))
    pm_id: Mapped[uuid.UUID] = mapped_column(index=True)
    label: Mapped[FeedbackLabel] = mapped_column(str_enum(FeedbackLabel))
    note_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    features: Mapped[dict[str, Any]]
    score: Mapped[float | None] = mapped_column(Float)
    actor: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(default=utcnow)
