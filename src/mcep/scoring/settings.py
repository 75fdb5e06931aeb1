"""Tunables of the scoring jobs, read from the environment (``MCEP_SCORING_*``) when a job
starts, never at import time."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from mcep.scoring.registry import MODEL_NAME


class ScoringSettings(BaseSettings):
    """How the scoring and retraining jobs run.

    ``retrain_interval`` is in seconds; unset (the default) switches retraining off.
    """

    model_config = SettingsConfigDict(env_prefix="MCEP_SCORING_", extra="ignore")

    model_name: str = MODEL_NAME
    batch_size: int = Field(default=2000, ge=1, le=50_000)
    poll_interval: float = Field(default=1.0, gt=0)
    """Seconds between looks at the event log while it is idle."""
    model_refresh: float = Field(default=5.0, ge=0)
    """Seconds a process trusts its in-memory champion before re-checking the database."""
    gap_timeout: float = Field(default=10.0, ge=0)
    """Seconds to wait for a hole in the event ids to fill (PostgreSQL) before stepping over."""
    rescore_batch: int = Field(default=2000, ge=1, le=50_000)
    retrain_interval: float | None = Field(default=None, gt=0)
    retrain_min_gain: float = Field(default=0.01, ge=0)
    """ROC-AUC a challenger must gain over the champion, on the same hold-out, to replace it."""
    retrain_min_auc: float = Field(default=0.6, ge=0.5, le=1)
    """ROC-AUC the first challenger must reach when there is no champion yet."""
