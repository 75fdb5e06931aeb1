"""Learning from advisors: feedback labels become a challenger, which must beat the champion.

A training example is a prospect's latest verdict (good lead and converted are positive, not a
lead is negative; a reset is no verdict) with the feature vector as it stood when the verdict
was given, so the model learns from what was known then.

:func:`challenge` trains a challenger and scores the *same* hold-out rows (the challenger's
stratified test part, never used to fit it) with both models. The challenger is promoted only
if its ROC-AUC beats the champion's by at least ``min_gain``; with no champion yet, if it
reaches ``min_auc``. Log loss and Brier score are recorded beside it. The champion may have
been trained on some of those rows, which can only flatter it: the rule errs towards keeping
the model in place. Every challenge is registered as a version and audited with the
comparison, promoted or not.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn import metrics as skm
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from mcep.audit import service as audit
from mcep.scoring import repository as repo
from mcep.scoring.champion import LoadedModel
from mcep.scoring.dataset import table_from_features
from mcep.scoring.features import vector_from_json
from mcep.scoring.model import Scorer, TrainedModel, dump_model
from mcep.scoring.models import GLOBAL_SCOPE, POSITIVE_LABELS, LeadFeedback, ModelVersion
from mcep.scoring.registry import MODEL_NAME
from mcep.scoring.store import DatabaseModelRegistry
from mcep.scoring.training import TrainingConfig, stratified_split, train_model

FEEDBACK_SOURCE = "feedback"


@dataclass(frozen=True, slots=True)
class Examples:
    """Labelled feature vectors, one per prospect, and when the newest label was given."""

    vectors: list[dict[str, float]]
    outcomes: list[bool]
    last_label_at: datetime | None

    @property
    def positives(self) -> int:
        return sum(self.outcomes)


@dataclass(frozen=True, slots=True)
class Comparison:
    """Both models on the same hold-out rows, and the decision."""

    holdout_rows: int
    holdout_positives: int
    challenger: Mapping[str, float]
    champion: Mapping[str, float] | None
    champion_version: int | None
    promote: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Challenge:
    model: TrainedModel
    comparison: Comparison
    examples: Examples


@dataclass(frozen=True, slots=True)
class RetrainResult:
    version: int
    promoted: bool
    comparison: Comparison


async def load_examples(session: AsyncSession) -> Examples:
    """Every prospect's latest verdict, as training examples."""
    rows = await repo.latest_labels(session)
    return Examples(
        vectors=[vector_from_json(r.features) for r in rows],
        outcomes=[r.label in POSITIVE_LABELS for r in rows],
        last_label_at=max((r.at for r in rows), default=None),
    )


async def labels_changed_since_last_challenge(session: AsyncSession, name: str) -> bool:
    """Whether feedback arrived after the newest version trained on feedback was made."""
    latest_label = await session.scalar(
        select(LeadFeedback.at).order_by(LeadFeedback.at.desc()).limit(1)
    )
    if latest_label is None:
        return False
    sources = await session.scalars(
        select(ModelVersion.source)
        .where(ModelVersion.name == name)
        .order_by(ModelVersion.version.desc())
        .limit(20)
    )
    for source in sources:
        if source.get("kind") == FEEDBACK_SOURCE and source.get("last_label_at"):
            return latest_label > datetime.fromisoformat(str(source["last_label_at"]))
    return True


def challenge(
    examples: Examples,
    *,
    champion: LoadedModel | None,
    config: TrainingConfig | None = None,
    min_gain: float = 0.01,
    min_auc: float = 0.6,
) -> Challenge:
    """Train a challenger on ``examples`` and judge it against ``champion`` (CPU only, no I/O).

    Too few labels of either kind is a :class:`mcep.scoring.errors.ScoringInputError`.
    """
    config = config or TrainingConfig()
    table = table_from_features(examples.vectors, examples.outcomes)
    model = train_model(table, config=config)
    test = stratified_split(table.y, config=config).test
    y = table.y[test].astype(np.int64)
    challenger = Scorer(model)
    ours = _metrics(y, challenger.score_batch(model.schema.encode_frame(table.features.iloc[test])))
    theirs = None
    if champion is not None:
        rows = champion.scorer.encode_many([examples.vectors[i] for i in test])
        theirs = _metrics(y, champion.scorer.score_batch(rows))
    promote, reason = decide(ours, theirs, min_gain=min_gain, min_auc=min_auc)
    comparison = Comparison(
        holdout_rows=len(test),
        holdout_positives=int(y.sum()),
        challenger=ours,
        champion=theirs,
        champion_version=champion.version if champion else None,
        promote=promote,
        reason=reason,
    )
    return Challenge(model, comparison, examples)


def decide(
    challenger: Mapping[str, float],
    champion: Mapping[str, float] | None,
    *,
    min_gain: float,
    min_auc: float,
) -> tuple[bool, str]:
    """The promotion rule (see the module doc), with its reason in words."""
    ours = challenger["roc_auc"]
    if champion is None:
        if ours >= min_auc:
            return True, f"no champion yet; challenger ROC-AUC {ours:.4f} >= {min_auc:.2f}"
        return False, f"no champion yet, but challenger ROC-AUC {ours:.4f} < {min_auc:.2f}"
    theirs = champion["roc_auc"]
    if ours >= theirs + min_gain:
        return True, f"challenger ROC-AUC {ours:.4f} beats champion {theirs:.4f} by >= {min_gain}"
    return False, f"challenger ROC-AUC {ours:.4f} does not beat champion {theirs:.4f} by {min_gain}"


def _metrics(y: NDArray[np.int64], scores: NDArray[np.float64]) -> dict[str, float]:
    p = np.clip(scores / 100, 1e-6, 1 - 1e-6)
    return {
        "roc_auc": float(skm.roc_auc_score(y, p)),
        "log_loss": float(skm.log_loss(y, p, labels=[0, 1])),
        "brier": float(skm.brier_score_loss(y, p)),
    }


async def record(
    session: AsyncSession,
    result: Challenge,
    *,
    actor: str,
    name: str = MODEL_NAME,
    scope: str = GLOBAL_SCOPE,
) -> RetrainResult:
    """Register the challenger, audit the comparison, promote it if it won (flush only)."""
    registry = DatabaseModelRegistry(session, actor=actor)
    examples, comparison = result.examples, result.comparison
    source = {
        "kind": FEEDBACK_SOURCE,
        "labels": len(examples.outcomes),
        "positives": examples.positives,
        "last_label_at": examples.last_label_at.isoformat() if examples.last_label_at else None,
    }
    info = await registry.register(
        name, artifact=dump_model(result.model), metrics=result.model.summary_metrics(),
        source=source,
    )  # fmt: skip
    await audit.append(
        session,
        actor=actor,
        action="model.challenged",
        object_type="model_version",
        object_id=f"{name}:{info.version}",
        details={"scope": scope, **_json_ready(asdict(comparison))},
    )
    if comparison.promote:
        await registry.promote(name, info.version, scope=scope, reason=comparison.reason)
    return RetrainResult(info.version, comparison.promote, comparison)


def _json_ready(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    return value
