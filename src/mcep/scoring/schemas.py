"""What the leads and models endpoints take and give."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from mcep.api.schemas import StrictModel
from mcep.scoring.models import GLOBAL_SCOPE, FeedbackLabel


class ContributionOut(BaseModel):
    """One reason behind a score: the feature, its value, and how far it moved the log-odds
    (positive: towards a lead)."""

    feature: str
    value: str | float | None
    log_odds: float


class TrendOut(BaseModel):
    """The score now against the score ``days`` ago (or the first score, if younger):
    ``up``/``down`` past one point of change, else ``flat``."""

    delta: float
    direction: Literal["up", "down", "flat"]
    days: int


class LeadOut(BaseModel):
    prospect_id: uuid.UUID
    pm_id: uuid.UUID
    name: str | None
    score: float | None
    threshold: int
    qualified: bool
    qualified_at: datetime | None
    scored_at: datetime | None
    model_version: int | None
    trend: TrendOut | None
    explanation: list[ContributionOut]
    last_feedback: FeedbackLabel | None = None


class ScorePointOut(BaseModel):
    at: datetime
    score: float
    model_version: int | None


class FeedbackIn(StrictModel):
    """An advisor's verdict: ``good_lead``, ``not_a_lead`` or ``converted`` become training
    labels; ``reset`` lets a qualified prospect qualify again."""

    label: FeedbackLabel
    note: str | None = Field(default=None, max_length=2000)


class FeedbackOut(BaseModel):
    id: uuid.UUID
    prospect_id: uuid.UUID
    label: FeedbackLabel
    note: str | None
    score: float | None
    actor: str
    at: datetime


class LeadDetailOut(LeadOut):
    history: list[ScorePointOut]
    feedback: list[FeedbackOut]
    features: dict[str, float | None]


class ModelVersionOut(BaseModel):
    id: int
    name: str
    version: int
    features: list[str]
    source: dict[str, Any]
    metrics: dict[str, Any]
    created_by: str
    created_at: datetime
    sha256: str
    size: int
    champion_of: list[str] = Field(description="Scopes this version is the champion of")


class ChampionOut(BaseModel):
    scope: str
    version: int
    model_version_id: int
    metrics: dict[str, Any]


class PromoteIn(StrictModel):
    scope: str = Field(default=GLOBAL_SCOPE, max_length=64, description="global or pm:<PM id>")
    reason: str | None = Field(default=None, max_length=500)


class RollbackIn(StrictModel):
    scope: str = Field(default=GLOBAL_SCOPE, max_length=64, description="global or pm:<PM id>")
