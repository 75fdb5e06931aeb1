"""Pure rules of real-time scoring: persisted feature state, holes in event ids, the promotion
rule, scopes and which attributes a model can read."""

from __future__ import annotations

import json
import math
import random
import uuid
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from zoneinfo import ZoneInfo

import pytest

from mcep.scoring.champion import Champions, LoadedModel
from mcep.scoring.errors import ModelNotUsable
from mcep.scoring.features import (
    EngagementEvent,
    EventKind,
    FeatureState,
    compute_features,
    vector_from_json,
    vector_to_json,
)
from mcep.scoring.model import Scorer, TrainedModel, dump_model
from mcep.scoring.realtime import GapGuard, numeric_attributes
from mcep.scoring.retraining import decide
from mcep.scoring.store import check_promotable, parse_scope, pm_scope

NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
TEXTS = ["Tell me more please", "Not interested", "What are the fees?", "STOP", "great!!"]
KINDS = ["sent", "delivered", "read", "replied", "failed", "opted_out", "campaign_outcome"]


def random_history(seed: int, n: int = 40) -> list[EngagementEvent]:
    rng = random.Random(seed)
    events = []
    for _ in range(n):
        kind = rng.choice(KINDS)
        at = NOW - timedelta(
            minutes=rng.randrange(0, 60 * 24 * 30), microseconds=rng.randrange(1000)
        )
        events.append(
            EngagementEvent(
                EventKind(kind), at, rng.choice(["whatsapp", "telegram"]),
                campaign_id=rng.choice(["c1", "c2", None]),
                text=rng.choice(TEXTS) if kind == "replied" else None,
                outcome=rng.choice(["success", "failure"]) if kind == "campaign_outcome" else None,
            )
        )  # fmt: skip
    return events


@pytest.mark.parametrize("seed", range(5))
def test_a_state_survives_json_and_keeps_folding(seed: int) -> None:
    tz = ZoneInfo("America/New_York")
    history = random_history(seed)
    state = FeatureState(tz=tz)
    for event in history[:25]:
        state.add(event)
    stored = json.loads(json.dumps(state.to_dict(), allow_nan=False))
    restored = FeatureState.from_dict(stored, tz=tz)
    for event in history[25:]:
        restored.add(event)
    expected = compute_features(history, now=NOW, tz=tz)
    assert restored.features(now=NOW) == pytest.approx(expected, nan_ok=True)


def test_an_empty_state_and_an_unknown_format() -> None:
    empty = FeatureState.from_dict(FeatureState().to_dict())
    assert empty.features(now=NOW) == pytest.approx(compute_features([], now=NOW), nan_ok=True)
    with pytest.raises(ValueError, match="format"):
        FeatureState.from_dict({"v": 99})


def test_vectors_travel_through_json_with_missing_values() -> None:
    vector = {"a": 1.5, "b": math.nan}
    stored = vector_to_json(vector)
    assert stored == {"a": 1.5, "b": None}
    assert json.dumps(stored, allow_nan=False)
    assert vector_from_json(stored) == pytest.approx(vector, nan_ok=True)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_hole_in_the_ids_is_waited_for_then_stepped_over() -> None:
    clock = Clock()
    guard = GapGuard(timeout=10, clock=clock)
    assert guard.usable(0, [1, 2, 3]) == 3
    assert guard.usable(3, [4, 6, 7]) == 1  # 5 may still be committing
    clock.now = 9.9
    assert guard.usable(4, [6, 7]) == 0
    clock.now = 10.0
    assert guard.usable(4, [6, 7]) == 2  # waited long enough: 5 was rolled back
    assert guard.usable(7, []) == 0


def test_a_hole_that_fills_in_time_is_read_in_order() -> None:
    clock = Clock()
    guard = GapGuard(timeout=10, clock=clock)
    assert guard.usable(3, [5]) == 0
    clock.now = 1
    assert guard.usable(3, [4, 5]) == 2
    assert guard._first_seen == {}


def test_without_a_timeout_holes_are_stepped_over_at_once() -> None:
    assert GapGuard(timeout=0).usable(0, [5, 9]) == 2


@pytest.mark.parametrize(
    ("ours", "theirs", "promote", "words"),
    [
        (0.70, None, True, "no champion yet"),
        (0.55, None, False, "< 0.60"),
        (0.80, 0.78, True, "beats champion"),
        (0.785, 0.78, False, "does not beat"),
        (0.70, 0.78, False, "does not beat"),
    ],
)
def test_the_promotion_rule(ours: float, theirs: float | None, promote: bool, words: str) -> None:
    champion = None if theirs is None else {"roc_auc": theirs}
    decision, reason = decide({"roc_auc": ours}, champion, min_gain=0.01, min_auc=0.6)
    assert decision is promote and words in reason


def test_scopes() -> None:
    pm = uuid.uuid4()
    assert parse_scope(" Global ") == "global"
    assert parse_scope(f"pm:{str(pm).upper()}") == pm_scope(pm) == f"pm:{pm}"
    for bad in ("", "pm:", "pm:42", "team:x"):
        with pytest.raises(ModelNotUsable):
            parse_scope(bad)


def test_a_pm_champion_overrides_the_global_one(trained_model: TrainedModel) -> None:
    pm, other = uuid.uuid4(), uuid.uuid4()
    scorer = Scorer(trained_model)
    general, special = LoadedModel(1, "m", 1, scorer), LoadedModel(2, "m", 2, scorer)
    champions = Champions(MappingProxyType({"global": general, pm_scope(pm): special}))
    assert champions.for_pm(pm) is special and champions.for_pm(other) is general
    assert Champions().for_pm(pm) is None and not Champions()


def test_a_model_without_engagement_inputs_is_not_promotable(trained_model: TrainedModel) -> None:
    # The shared synthetic model reads replies, days_since and channel: not engagement features.
    with pytest.raises(ModelNotUsable, match="reads none of the prospect engagement features"):
        check_promotable(dump_model(trained_model), version=4)
    with pytest.raises(ModelNotUsable, match="version 4 can't be loaded"):
        check_promotable(b"{}", version=4)


def test_only_numeric_attributes_reach_the_model() -> None:
    attributes = {"aum": 2_500_000, "vip": True, "segment": "hnw", "bad": math.inf, "n": None}
    assert numeric_attributes(attributes) == {"aum": 2_500_000.0, "vip": 1.0}


def test_scoring_many_rows_equals_scoring_each(trained_model: TrainedModel) -> None:
    scorer = Scorer(trained_model)
    rows = [{"replies": r, "days_since": d, "channel": "whatsapp"} for r, d in ((0, 5), (4, 1))]
    matrix = scorer.encode_many(rows)
    each = [scorer.score(row, explain=False).score for row in rows]
    assert list(scorer.score_batch(matrix)) == pytest.approx(each)
    explained = scorer.explain_batch(matrix)
    assert explained[1] == scorer.contributions(matrix[1:2])
