"""The artifact round trip and the in-memory Scorer."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import expit

from mcep.scoring.dataset import LabelledTable
from mcep.scoring.errors import ScoringError, ScoringInputError
from mcep.scoring.model import (
    ARTIFACT_FORMAT,
    IsotonicCalibrator,
    PlattCalibrator,
    Scorer,
    TrainedModel,
    dump_model,
    load_model,
)

PROSPECT = {"replies": 4, "days_since": "3.5", "channel": "whatsapp", "noise": 0.1}


@pytest.fixture(scope="module")
def matrix(trained_model: TrainedModel, synthetic_table: LabelledTable) -> np.ndarray:
    return trained_model.schema.encode_frame(synthetic_table.features)


def test_artifact_is_json_and_loads_back_to_identical_scores(
    trained_model: TrainedModel, matrix: np.ndarray
) -> None:
    artifact = dump_model(trained_model)
    document = json.loads(artifact)
    assert document["format"] == ARTIFACT_FORMAT
    assert document["calibrator"]["method"] == trained_model.calibrator.method
    loaded = load_model(artifact)
    before, after = Scorer(trained_model), Scorer(loaded)
    assert np.array_equal(before.score_batch(matrix), after.score_batch(matrix))
    assert before.score(PROSPECT) == after.score(PROSPECT)
    assert loaded.schema == trained_model.schema
    assert loaded.evaluation == trained_model.evaluation
    assert loaded.info == trained_model.info
    assert dump_model(loaded) == artifact


@pytest.mark.parametrize(
    "calibrator",
    [
        PlattCalibrator(0.8, -0.3),
        IsotonicCalibrator(np.array([-2.0, 0.0, 2.0]), np.array([0.1, 0.3, 0.9])),
    ],
)
def test_both_calibrators_round_trip(
    trained_model: TrainedModel,
    matrix: np.ndarray,
    calibrator: PlattCalibrator | IsotonicCalibrator,
) -> None:
    model = TrainedModel(
        trained_model.booster,
        calibrator,
        trained_model.schema,
        trained_model.evaluation,
        trained_model.info,
    )
    loaded = load_model(dump_model(model))
    assert type(loaded.calibrator) is type(calibrator)
    assert np.array_equal(Scorer(model).score_batch(matrix), Scorer(loaded).score_batch(matrix))


@pytest.mark.parametrize(
    "artifact",
    [
        b"not json",
        b"{}",
        json.dumps({"format": "pickle"}).encode(),
        b'{"format": "%s"}' % ARTIFACT_FORMAT.encode(),
    ],
)
def test_anything_else_is_not_a_model(artifact: bytes) -> None:
    with pytest.raises(ScoringError, match="not a usable lead-score model artifact"):
        load_model(artifact)


def test_a_score_is_the_calibrated_probability_of_the_booster_log_odds(
    trained_model: TrainedModel,
) -> None:
    scorer = Scorer(trained_model)
    result = scorer.score(PROSPECT)
    row = scorer.encode(PROSPECT)
    raw = np.asarray(trained_model.booster.predict(row, raw_score=True), dtype=np.float64)
    assert result.probability == pytest.approx(trained_model.calibrator.apply(raw)[0], rel=1e-12)
    assert result.score == pytest.approx(100 * result.probability)
    assert scorer.score_batch(row)[0] == pytest.approx(result.score, rel=1e-12)


def test_scores_follow_the_signal(trained_model: TrainedModel) -> None:
    scorer = Scorer(trained_model)
    keen = scorer.score({"replies": 6, "days_since": 1, "channel": "whatsapp"}, explain=False)
    cold = scorer.score({"replies": 0, "days_since": 55, "channel": "signal"}, explain=False)
    assert 0 <= cold.score < 15 < 70 < keen.score <= 100
    assert keen.contributions == ()


def test_top_five_contributions_come_from_pred_contrib_largest_first(
    trained_model: TrainedModel,
) -> None:
    scorer = Scorer(trained_model)
    result = scorer.score(PROSPECT)
    full = trained_model.booster.predict(scorer.encode(PROSPECT), pred_contrib=True)[0]
    by_name = dict(zip(scorer.feature_names, full[:-1], strict=True))
    assert 0 < len(result.contributions) <= 5
    sizes = [abs(c.log_odds) for c in result.contributions]
    assert sizes == sorted(sizes, reverse=True)
    assert all(c.log_odds == by_name[c.feature] for c in result.contributions)
    assert result.contributions[0].feature == "replies" and result.contributions[0].log_odds > 0
    shown = {c.feature: c.value for c in result.contributions}
    assert shown.get("replies") == 4.0 and shown.get("channel", "whatsapp") == "whatsapp"
    assert all(type(v) in (float, str, type(None)) for v in shown.values())  # JSON-ready
    # Contributions plus the bias add up to the booster's log-odds.
    raw = trained_model.booster.predict(scorer.encode(PROSPECT), raw_score=True)[0]
    assert full.sum() == pytest.approx(raw)


def test_missing_and_unseen_values_still_score(trained_model: TrainedModel) -> None:
    scorer = Scorer(trained_model)
    assert 0 <= scorer.score({}).score <= 100
    assert 0 <= scorer.score({"channel": "carrier pigeon", "replies": None}).score <= 100


def test_batch_of_the_wrong_width_is_refused(trained_model: TrainedModel) -> None:
    with pytest.raises(ScoringInputError, match="expected rows of 4 features"):
        Scorer(trained_model).score_batch(np.zeros((3, 7)))


def test_batch_scores_a_typed_frame(
    trained_model: TrainedModel, synthetic_table: LabelledTable, matrix: np.ndarray
) -> None:
    scorer = Scorer(trained_model)
    assert np.array_equal(scorer.score_batch(synthetic_table.features), scorer.score_batch(matrix))


def test_calibrators_map_log_odds_as_documented() -> None:
    platt = PlattCalibrator(slope=2.0, intercept=-1.0)
    assert platt.apply(np.array([0.5]))[0] == pytest.approx(expit(0.0))
    iso = IsotonicCalibrator(np.array([-1.0, 1.0]), np.array([0.0, 1.0]))
    assert iso.apply(np.array([-5.0, 0.0, 5.0])).tolist() == pytest.approx([1e-3, 0.5, 1 - 1e-3])


def test_report_puts_the_headline_numbers_at_the_top(trained_model: TrainedModel) -> None:
    report = trained_model.report(model_version=7)
    expected = ["roc_auc", "pr_auc", "log_loss", "brier", "accuracy", "ece", "calibration"]
    assert list(report)[:8] == [*expected, "model_version"]
    assert report["model_version"] == 7
    assert report["calibration_method"] == trained_model.calibrator.method
    json.dumps(report, allow_nan=False)
