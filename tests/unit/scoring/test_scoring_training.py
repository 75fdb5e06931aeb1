"""Training on a synthetic table whose true probabilities are known."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logit
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import log_loss, roc_auc_score

from mcep.scoring.dataset import LabelledTable, load_csv
from mcep.scoring.errors import ScoringInputError
from mcep.scoring.model import IsotonicCalibrator, PlattCalibrator, TrainedModel, dump_model
from mcep.scoring.training import (
    TrainingConfig,
    choose_calibrator,
    fit_isotonic,
    fit_platt,
    stratified_split,
    train_model,
)


def test_split_parts_are_disjoint_cover_every_row_and_keep_the_positive_share(
    synthetic_table: LabelledTable,
) -> None:
    y = synthetic_table.y
    split = stratified_split(y, config=TrainingConfig())
    parts = dict(split.parts())
    everything = np.concatenate(list(parts.values()))
    assert sorted(everything.tolist()) == list(range(len(y)))
    assert len(parts["test"]) == pytest.approx(0.2 * len(y), abs=1)
    assert len(parts["calibration"]) == pytest.approx(0.125 * len(y), abs=2)
    for rows in parts.values():
        assert y[rows].mean() == pytest.approx(y.mean(), abs=0.01)


def test_model_learns_the_signal_nearly_as_well_as_the_truth(
    synthetic_rows: tuple[Path, list[float]],
    trained_model: TrainedModel,
    synthetic_table: LabelledTable,
) -> None:
    truths = np.array(synthetic_rows[1])
    test = stratified_split(synthetic_table.y, config=TrainingConfig(seed=3)).test
    best_possible = roc_auc_score(synthetic_table.y[test], truths[test])
    assert trained_model.evaluation.roc_auc > best_possible - 0.03
    assert trained_model.evaluation.n == len(test)


def test_scores_are_calibrated_on_the_hold_out(trained_model: TrainedModel) -> None:
    e = trained_model.evaluation
    assert e.ece < 0.05
    assert e.log_loss < trained_model.info.uncalibrated["log_loss"] + 0.01


def test_training_info_says_what_was_chosen_and_why(trained_model: TrainedModel) -> None:
    info = trained_model.info
    losses = info.calibration_log_loss
    assert set(losses) == {"platt", "isotonic"}
    assert info.calibration_method == min(losses, key=losses.__getitem__)
    assert info.calibration_method == trained_model.calibrator.method
    assert 0 < info.best_iteration <= TrainingConfig().max_rounds
    assert trained_model.booster.current_iteration() == info.best_iteration
    assert (info.label, info.positive) == ("converted", "yes")
    assert any("prospect_id" in note for note in info.notes)  # an identifier, left out


def test_same_seed_same_model_other_seed_other_model(synthetic_table: LabelledTable) -> None:
    config = TrainingConfig(seed=5, max_rounds=60)
    first = train_model(synthetic_table, config=config)
    again = train_model(synthetic_table, config=config)
    other = train_model(synthetic_table, config=TrainingConfig(seed=6, max_rounds=60))
    assert dump_model(first) == dump_model(again)
    assert dump_model(first) != dump_model(other)


def test_progress_is_reported(synthetic_table: LabelledTable) -> None:
    messages: list[str] = []
    train_model(synthetic_table, config=TrainingConfig(max_rounds=50), progress=messages.append)
    assert messages[0] == "splitting rows"
    assert any(m.startswith("boosting: round 25") for m in messages)
    assert "calibrating" in messages


def test_a_class_too_small_to_split_is_an_input_error() -> None:
    table = LabelledTable(
        features=pd.DataFrame({"x": np.arange(30, dtype=np.float64)}),
        y=np.array([1] * 2 + [0] * 28, dtype=np.int8),
        label="won",
        positive="yes",
        kinds={"x": "numeric"},
    )
    with pytest.raises(ScoringInputError, match="split"):
        train_model(table)


# --- calibrators -------------------------------------------------------------------------


def sigmoid_data(slope: float, intercept: float, n: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    raw = rng.normal(0, 2, n)
    y = (rng.uniform(0, 1, n) < expit(slope * raw + intercept)).astype(np.int8)
    return raw, y


def test_platt_recovers_a_known_slope_and_intercept() -> None:
    raw, y = sigmoid_data(0.5, -1.0)
    platt = fit_platt(raw, y)
    assert platt.slope == pytest.approx(0.5, abs=0.05)
    assert platt.intercept == pytest.approx(-1.0, abs=0.07)
    assert platt.apply(np.array([2.0]))[0] == pytest.approx(
        expit(2 * platt.slope + platt.intercept)
    )


def test_isotonic_maps_like_sklearn_within_the_clip() -> None:
    raw, y = sigmoid_data(1.0, 0.0, n=3_000)
    ours = fit_isotonic(raw, y)
    theirs = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(raw, y)
    probe = np.linspace(-8, 8, 401)
    eps = IsotonicCalibrator.EPSILON
    assert np.allclose(ours.apply(probe), np.clip(theirs.predict(probe), eps, 1 - eps))
    assert np.all(np.diff(ours.apply(probe)) >= 0)


def test_the_calibrator_with_lower_validation_loss_wins() -> None:
    # The truth is a step: isotonic can follow it, a sigmoid can't.
    rng = np.random.default_rng(5)
    raw = rng.normal(0, 2, 8_000)
    y = (rng.uniform(0, 1, raw.size) < np.where(raw > 1, 0.9, 0.05)).astype(np.int8)
    chosen, losses = choose_calibrator(raw[:4000], y[:4000], raw[4000:], y[4000:])
    assert isinstance(chosen, IsotonicCalibrator) and losses["isotonic"] < losses["platt"]
    # A true sigmoid: Platt is as good with two numbers.
    raw, y = sigmoid_data(0.7, -0.5, n=8_000)
    chosen, losses = choose_calibrator(raw[:4000], y[:4000], raw[4000:], y[4000:])
    assert isinstance(chosen, PlattCalibrator) and losses["platt"] < losses["isotonic"]
    assert losses["platt"] == pytest.approx(log_loss(y[4000:], chosen.apply(raw[4000:])))


def test_calibration_fixes_an_over_confident_booster() -> None:
    raw, y = sigmoid_data(0.4, 0.0)  # raw log-odds 2.5 times too large
    platt = fit_platt(raw[:10_000], y[:10_000])
    before = log_loss(y[10_000:], expit(raw[10_000:]))
    after = log_loss(y[10_000:], platt.apply(raw[10_000:]))
    assert after < before - 0.05
    assert logit(platt.apply(np.array([5.0]))[0]) == pytest.approx(2.0, abs=0.2)


def test_a_small_csv_trains_end_to_end(outcomes_csv: Callable[..., Path]) -> None:
    path = outcomes_csv(rows=800, seed=1)
    model = train_model(load_csv(path, label="converted"), config=TrainingConfig(max_rounds=80))
    assert model.evaluation.roc_auc > 0.7
