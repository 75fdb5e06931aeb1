"""A trained lead-score model, its artifact format and the fast in-memory :class:`Scorer`.

The artifact is UTF-8 JSON, never pickle: LightGBM's own model text, the calibrator's few
numbers, the feature schema with its category codes, the evaluation and how the model was
trained. Loading it back gives the same scores bit for bit.

Inference goes through the raw ``lightgbm.Booster`` (the scikit-learn wrapper costs ten times
as much per row): the booster's log-odds, then the calibrator, times 100.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import lightgbm as lgb
import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.special import expit

from mcep.scoring.dataset import FeatureSchema
from mcep.scoring.errors import ScoringError, ScoringInputError
from mcep.scoring.metrics import Evaluation

ARTIFACT_FORMAT = "mcep.lead-score.v1"
TOP_CONTRIBUTIONS = 5
_HEADLINE = ("roc_auc", "pr_auc", "log_loss", "brier", "accuracy", "ece", "calibration")


# --- calibration -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlattCalibrator:
    """Probability = sigmoid(slope * log-odds + intercept)."""

    slope: float
    intercept: float
    method: ClassVar[str] = "platt"

    def apply(self, raw: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.asarray(expit(self.slope * raw + self.intercept), dtype=np.float64)

    def to_dict(self) -> dict[str, object]:
        """The method and its two numbers, JSON-ready."""
        return {"method": self.method, "slope": self.slope, "intercept": self.intercept}


@dataclass(frozen=True, slots=True, eq=False)
class IsotonicCalibrator:
    """A monotone step map from log-odds to probability, linear between its knots.

    Probabilities are kept within [``EPSILON``, 1 - ``EPSILON``]: a score never claims
    certainty, and one surprise can't make the log loss infinite.
    """

    knots_x: NDArray[np.float64]
    knots_y: NDArray[np.float64]
    method: ClassVar[str] = "isotonic"
    EPSILON: ClassVar[float] = 1e-3

    def apply(self, raw: NDArray[np.float64]) -> NDArray[np.float64]:
        p = np.interp(raw, self.knots_x, self.knots_y)
        return np.clip(p, self.EPSILON, 1 - self.EPSILON)

    def to_dict(self) -> dict[str, object]:
        """The method and its knots, JSON-ready."""
        return {"method": self.method, "x": self.knots_x.tolist(), "y": self.knots_y.tolist()}


Calibrator = PlattCalibrator | IsotonicCalibrator


def calibrator_from_dict(data: Mapping[str, Any]) -> Calibrator:
    """Rebuild a calibrator from its ``to_dict`` form."""
    if data.get("method") == PlattCalibrator.method:
        return PlattCalibrator(float(data["slope"]), float(data["intercept"]))
    if data.get("method") == IsotonicCalibrator.method:
        return IsotonicCalibrator(
            np.asarray(data["x"], dtype=np.float64), np.asarray(data["y"], dtype=np.float64)
        )
    raise ValueError(f"unknown calibration method {data.get('method')!r}")


# --- the trained model -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrainingInfo:
    """How a model was trained: enough to reproduce it and to judge its evaluation.

    ``calibration_log_loss`` is each candidate calibrator's validation log loss, the lower one
    chosen; ``uncalibrated`` holds the booster's own hold-out metrics, for comparison.
    """

    label: str
    positive: str
    seed: int
    best_iteration: int
    calibration_method: str
    calibration_log_loss: Mapping[str, float]
    split_sizes: Mapping[str, int]
    uncalibrated: Mapping[str, float]
    params: Mapping[str, Any]
    notes: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingInfo:
        """Rebuild from ``dataclasses.asdict`` output (after a JSON round trip)."""
        return cls(**{**data, "notes": tuple(data.get("notes", ()))})


@dataclass(frozen=True, eq=False)
class TrainedModel:
    """A booster (best iteration only), its calibrator, schema, evaluation and history."""

    booster: lgb.Booster
    calibrator: Calibrator
    schema: FeatureSchema
    evaluation: Evaluation
    info: TrainingInfo

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.schema.names

    def summary_metrics(self) -> dict[str, float]:
        """The hold-out headline numbers, as a registry keeps them."""
        e = self.evaluation
        return {
            "roc_auc": e.roc_auc,
            "pr_auc": e.pr_auc,
            "log_loss": e.log_loss,
            "brier": e.brier,
            "accuracy": e.accuracy,
            "ece": e.ece,
        }

    def report(self, *, model_version: int) -> dict[str, object]:
        """The hold-out evaluation as a JSON-ready document, headline numbers at the top."""
        evaluation = self.evaluation.to_dict()
        info = asdict(self.info)
        return {
            **{key: evaluation.pop(key) for key in _HEADLINE},
            "model_version": model_version,
            **evaluation,
            "calibration_method": info.pop("calibration_method"),
            "features": [{"name": c.name, "kind": c.kind} for c in self.schema.columns],
            **info,
        }


def dump_model(model: TrainedModel) -> bytes:
    """The model as a self-contained JSON artifact."""
    document = {
        "format": ARTIFACT_FORMAT,
        "booster": model.booster.model_to_string(),
        "calibrator": model.calibrator.to_dict(),
        "schema": model.schema.to_dict(),
        "evaluation": model.evaluation.to_dict(),
        "info": asdict(model.info),
    }
    return json.dumps(document, allow_nan=False).encode()


def load_model(artifact: bytes) -> TrainedModel:
    """Rebuild a model from :func:`dump_model` output."""
    try:
        document = json.loads(artifact)
        if document.get("format") != ARTIFACT_FORMAT:
            raise ValueError(f"format is {document.get('format')!r}, not {ARTIFACT_FORMAT!r}")
        return TrainedModel(
            booster=lgb.Booster(model_str=document["booster"]),
            calibrator=calibrator_from_dict(document["calibrator"]),
            schema=FeatureSchema.from_dict(document["schema"]),
            evaluation=Evaluation.from_dict(document["evaluation"]),
            info=TrainingInfo.from_dict(document["info"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError, lgb.basic.LightGBMError) as exc:
        raise ScoringError(f"not a usable lead-score model artifact: {exc}") from None


# --- inference ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Contribution:
    """How much one feature moved this score, in log-odds (positive: towards a lead)."""

    feature: str
    value: str | float | None
    log_odds: float


@dataclass(frozen=True, slots=True)
class Score:
    """A calibrated score from 0 to 100 (about the chance in percent) and its main reasons."""

    score: float
    probability: float
    contributions: tuple[Contribution, ...] = field(default=())


class Scorer:
    """Scores prospects with a trained model, one at a time or in batches."""

    def __init__(self, model: TrainedModel) -> None:
        self._booster = model.booster
        self._calibrator = model.calibrator
        self._schema = model.schema
        self._names = model.schema.names

    @classmethod
    def from_artifact(cls, artifact: bytes) -> Scorer:
        return cls(load_model(artifact))

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self._names

    def encode(self, features: Mapping[str, object]) -> NDArray[np.float64]:
        """One prospect's raw feature values as the model's 1 x n input row."""
        return self._schema.encode_row(features)

    def encode_many(self, rows: Sequence[Mapping[str, object]]) -> NDArray[np.float64]:
        """Many prospects' feature vectors as the model's input matrix; absent names are
        missing. All-numeric schemas (the engagement features) skip per-cell parsing."""
        if not rows:
            return np.empty((0, len(self._names)), dtype=np.float64)
        if self._schema.categorical_indices:
            return np.vstack([self._schema.encode_row(row) for row in rows])
        nan = math.nan
        return np.array([[row.get(n, nan) for n in self._names] for row in rows], dtype=np.float64)

    def score(self, features: Mapping[str, object], *, explain: bool = True) -> Score:
        """Score one prospect; with ``explain``, also its top contributions."""
        row = self.encode(features)
        probability = float(self._probabilities(row, num_threads=1)[0])
        contributions = self.contributions(row) if explain else ()
        return Score(100 * probability, probability, contributions)

    def score_batch(self, rows: NDArray[np.float64] | pd.DataFrame) -> NDArray[np.float64]:
        """Scores 0-100 for an encoded matrix, or for a typed frame with the schema's columns."""
        matrix = self._schema.encode_frame(rows) if isinstance(rows, pd.DataFrame) else rows
        if matrix.ndim != 2 or matrix.shape[1] != len(self._names):
            raise ScoringInputError(
                f"expected rows of {len(self._names)} features, got shape {matrix.shape}"
            )
        return 100 * self._probabilities(matrix)

    def contributions(
        self, row: NDArray[np.float64], *, top: int = TOP_CONTRIBUTIONS
    ) -> tuple[Contribution, ...]:
        """The ``top`` features that moved this row's log-odds most, largest first."""
        output = self._booster.predict(row, pred_contrib=True, num_threads=1)
        values = np.asarray(output, dtype=np.float64)[0, :-1]
        order = np.argsort(-np.abs(values), kind="stable")[:top]
        return tuple(
            Contribution(self._names[j], self._schema.decode(j, row[0, j]), float(values[j]))
            for j in order
            if values[j] != 0
        )

    def explain_batch(
        self, matrix: NDArray[np.float64], *, top: int = TOP_CONTRIBUTIONS
    ) -> list[tuple[Contribution, ...]]:
        """:meth:`contributions` for every row of an encoded matrix, in one booster call."""
        if len(matrix) == 0:
            return []
        output = np.asarray(self._booster.predict(matrix, pred_contrib=True), dtype=np.float64)
        explained = []
        for row, values in zip(matrix, output[:, :-1], strict=True):
            order = np.argsort(-np.abs(values), kind="stable")[:top]
            explained.append(
                tuple(
                    Contribution(self._names[j], self._schema.decode(j, row[j]), float(values[j]))
                    for j in order
                    if values[j] != 0
                )
            )
        return explained

    def _probabilities(
        self, matrix: NDArray[np.float64], *, num_threads: int = 0
    ) -> NDArray[np.float64]:
        # num_threads=0 lets OpenMP use every core; one row is fastest on one thread.
        raw = self._booster.predict(matrix, raw_score=True, num_threads=num_threads)
        return self._calibrator.apply(np.asarray(raw, dtype=np.float64))
