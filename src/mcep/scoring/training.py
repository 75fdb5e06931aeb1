"""Training a calibrated LightGBM lead-score model on a labelled table.

The rows are split once, stratified by outcome, into four parts that each do one job:

- train (55%): the booster learns from these;
- validation (12.5%): early stopping, and choosing between the calibrators;
- calibration (12.5%): both calibrators (Platt and isotonic) are fitted here, on rows the
  booster never saw, so the calibration is honest;
- test (20%): touched once, at the end, for the reported metrics.

Same table, same config, same seed: same model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields

import lightgbm as lgb
import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize
from scipy.special import expit
from sklearn import metrics as skm
from sklearn.isotonic import IsotonicRegression
from sklearn.model_selection import train_test_split

from mcep.scoring.dataset import FeatureSchema, LabelledTable
from mcep.scoring.errors import ScoringInputError
from mcep.scoring.metrics import calibration_table, evaluate, expected_calibration_error
from mcep.scoring.model import (
    Calibrator,
    IsotonicCalibrator,
    PlattCalibrator,
    TrainedModel,
    TrainingInfo,
)

Progress = Callable[[str], None]
Indices = NDArray[np.intp]


@dataclass(frozen=True, slots=True)
class TrainingConfig:
    """Split fractions (of all rows), boosting limits and tree shape."""

    seed: int = 0
    test_fraction: float = 0.2
    validation_fraction: float = 0.125
    calibration_fraction: float = 0.125
    max_rounds: int = 1000
    early_stopping_rounds: int = 100
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 50
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    lambda_l2: float = 1.0
    num_threads: int = 2


@dataclass(frozen=True, slots=True)
class Split:
    """Row indices of the four parts."""

    train: Indices
    validation: Indices
    calibration: Indices
    test: Indices

    def parts(self) -> Iterator[tuple[str, Indices]]:
        yield from ((f.name, getattr(self, f.name)) for f in fields(self))


def train_model(
    table: LabelledTable, *, config: TrainingConfig | None = None, progress: Progress | None = None
) -> TrainedModel:
    """Train, calibrate and evaluate a model on ``table``."""
    config = config or TrainingConfig()
    report = progress or (lambda _: None)
    report("splitting rows")
    split = stratified_split(table.y, config=config)
    schema = FeatureSchema.fit(table.features.iloc[split.train], table.kinds)
    matrix, y = schema.encode_frame(table.features), table.y
    booster = fit_booster(matrix, y, split, schema=schema, config=config, progress=report)
    raw = {name: _raw(booster, matrix[rows]) for name, rows in split.parts()}
    report("calibrating")
    calibrator, losses = choose_calibrator(
        raw["calibration"], y[split.calibration], raw["validation"], y[split.validation]
    )
    report("evaluating on the hold-out rows")
    y_test = y[split.test]
    return TrainedModel(
        booster=booster,
        calibrator=calibrator,
        schema=schema,
        evaluation=evaluate(y_test, calibrator.apply(raw["test"]), seed=config.seed),
        info=TrainingInfo(
            label=table.label,
            positive=table.positive,
            seed=config.seed,
            best_iteration=booster.current_iteration(),
            calibration_method=calibrator.method,
            calibration_log_loss=losses,
            split_sizes={name: len(rows) for name, rows in split.parts()},
            uncalibrated=_uncalibrated_metrics(y_test, raw["test"]),
            params=booster_params(config, n_train=len(split.train)),
            notes=table.notes,
        ),
    )


def stratified_split(y: NDArray[np.int8], *, config: TrainingConfig) -> Split:
    """Four disjoint parts with the same share of positives as the whole."""
    held = (config.validation_fraction + config.calibration_fraction) / (1 - config.test_fraction)
    share = config.calibration_fraction / (config.validation_fraction + config.calibration_fraction)
    try:
        rest, test = _stratified(np.arange(len(y)), y, config.test_fraction, config.seed)
        train, held_out = _stratified(rest, y, held, config.seed)
        validation, calibration = _stratified(held_out, y, share, config.seed)
    except ValueError as exc:  # a class too small to stratify
        raise ScoringInputError(f"can't split the rows fairly: {exc}") from None
    split = Split(*(np.sort(part) for part in (train, validation, calibration, test)))
    _check_both_classes(y, split)
    return split


def _stratified(
    rows: Indices, y: NDArray[np.int8], fraction: float, seed: int
) -> tuple[Indices, Indices]:
    kept, taken = train_test_split(rows, test_size=fraction, stratify=y[rows], random_state=seed)
    return kept, taken


def _check_both_classes(y: NDArray[np.int8], split: Split) -> None:
    for name, rows in split.parts():
        if len(np.unique(y[rows])) < 2:
            raise ScoringInputError(
                f"the {name} part of the split has only one outcome; more rows of the rarer "
                "outcome are needed"
            )


def booster_params(config: TrainingConfig, *, n_train: int) -> dict[str, object]:
    """LightGBM parameters; leaves may be smaller on small tables so trees can still split."""
    return {
        "objective": "binary",
        "metric": "binary_logloss",
        "learning_rate": config.learning_rate,
        "num_leaves": config.num_leaves,
        "min_data_in_leaf": min(config.min_data_in_leaf, max(5, n_train // 50)),
        "feature_fraction": config.feature_fraction,
        "bagging_fraction": config.bagging_fraction,
        "bagging_freq": 1,
        "lambda_l2": config.lambda_l2,
        "num_threads": config.num_threads,
        "seed": config.seed,
        # Both are needed for the same model from the same data and seed.
        "deterministic": True,
        "force_col_wise": True,
        "verbosity": -1,
    }


def fit_booster(
    matrix: NDArray[np.float64],
    y: NDArray[np.int8],
    split: Split,
    *,
    schema: FeatureSchema,
    config: TrainingConfig,
    progress: Progress,
) -> lgb.Booster:
    """Boost on the train part, stop early on the validation part; keep the best trees only."""
    names, categorical = list(schema.names), schema.categorical_indices
    train = lgb.Dataset(
        matrix[split.train], y[split.train], feature_name=names, categorical_feature=categorical
    )
    valid = train.create_valid(matrix[split.validation], y[split.validation])
    booster = lgb.train(
        booster_params(config, n_train=len(split.train)),
        train,
        num_boost_round=config.max_rounds,
        valid_sets=[valid],
        valid_names=["validation"],
        callbacks=[
            lgb.early_stopping(config.early_stopping_rounds, verbose=False),
            _progress_callback(progress, total=config.max_rounds),
        ],
    )
    best = booster.best_iteration or booster.current_iteration()
    return lgb.Booster(model_str=booster.model_to_string(num_iteration=best))


def _progress_callback(progress: Progress, *, total: int) -> Callable[[object], None]:
    def callback(env: object) -> None:
        iteration = getattr(env, "iteration", 0) + 1
        results = getattr(env, "evaluation_result_list", None) or []
        if iteration % 25 == 0 and results:
            progress(f"boosting: round {iteration} of at most {total}, "
                     f"validation log loss {results[0][2]:.4f}")  # fmt: skip

    return callback


def _raw(booster: lgb.Booster, rows: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.asarray(booster.predict(rows, raw_score=True), dtype=np.float64)


# --- calibration -------------------------------------------------------------------------


def choose_calibrator(
    raw_fit: NDArray[np.float64],
    y_fit: NDArray[np.int8],
    raw_check: NDArray[np.float64],
    y_check: NDArray[np.int8],
) -> tuple[Calibrator, dict[str, float]]:
    """Fit Platt and isotonic on one part, keep the one with lower log loss on the other."""
    candidates: list[Calibrator] = [fit_platt(raw_fit, y_fit), fit_isotonic(raw_fit, y_fit)]
    losses = {
        c.method: float(skm.log_loss(y_check, c.apply(raw_check), labels=[0, 1]))
        for c in candidates
    }
    best = min(candidates, key=lambda c: losses[c.method])  # a tie keeps Platt, the simpler
    return best, losses


def fit_platt(raw: NDArray[np.float64], y: NDArray[np.int8]) -> PlattCalibrator:
    """Slope and intercept on the log-odds that minimise log loss."""
    target = y.astype(np.float64)

    def loss(w: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        z = w[0] * raw + w[1]
        residual = expit(z) - target
        value = float(np.mean(np.logaddexp(0.0, z) - target * z))
        return value, np.array([np.mean(residual * raw), np.mean(residual)])

    result = minimize(loss, x0=np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
    return PlattCalibrator(slope=float(result.x[0]), intercept=float(result.x[1]))


def fit_isotonic(raw: NDArray[np.float64], y: NDArray[np.int8]) -> IsotonicCalibrator:
    """A monotone map from log-odds to the observed rate (pool adjacent violators)."""
    fitted = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, y)
    return IsotonicCalibrator(
        np.asarray(fitted.X_thresholds_, dtype=np.float64),
        np.asarray(fitted.y_thresholds_, dtype=np.float64),
    )


def _uncalibrated_metrics(y: NDArray[np.int8], raw: NDArray[np.float64]) -> dict[str, float]:
    p = np.asarray(expit(raw), dtype=np.float64)
    return {
        "roc_auc": float(skm.roc_auc_score(y, p)),
        "log_loss": float(skm.log_loss(y, p, labels=[0, 1])),
        "brier": float(skm.brier_score_loss(y, p)),
        "ece": expected_calibration_error(calibration_table(y.astype(np.int64), p)),
    }
