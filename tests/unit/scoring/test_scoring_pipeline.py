"""From event histories to a score: features, training table, model and scorer together."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from mcep.scoring.dataset import table_from_features
from mcep.scoring.errors import ScoringInputError
from mcep.scoring.features import EngagementEvent, EventKind, compute_features, feature_names
from mcep.scoring.model import Scorer
from mcep.scoring.training import TrainingConfig, train_model

NOW = datetime(2026, 6, 1, tzinfo=UTC)
WARM = ["Sounds great, tell me more!", "Yes please, call me tomorrow", "Interesting, what fees?"]
COLD = ["Not interested, thanks", "no thanks", "Please stop messaging me"]


def history(rng: random.Random, keenness: float) -> list[EngagementEvent]:
    """A prospect who reads and answers warmly as often as they are keen."""
    events = []
    start = NOW - timedelta(days=rng.uniform(5, 60))
    for i in range(rng.randint(1, 4)):
        sent = start + timedelta(days=3 * i)
        events.append(EngagementEvent(EventKind.SENT, sent, "whatsapp", campaign_id="c1"))
        events.append(EngagementEvent(EventKind.DELIVERED, sent + timedelta(minutes=1), "whatsapp"))
        if rng.random() < 0.3 + 0.6 * keenness:
            events.append(EngagementEvent(EventKind.READ, sent + timedelta(hours=1), "whatsapp"))
        if rng.random() < 0.7 * keenness + 0.1:
            text = rng.choice(WARM if rng.random() < keenness else COLD)
            at = sent + timedelta(hours=rng.uniform(0.2, 30) * (1.5 - keenness))
            events.append(EngagementEvent(EventKind.REPLIED, at, "whatsapp", text=text))
    return events


def test_a_model_trained_on_event_features_ranks_keen_prospects_first() -> None:
    rng = random.Random(4)
    vectors, outcomes = [], []
    for _ in range(2500):
        keenness = rng.random()
        vectors.append(compute_features(history(rng, keenness), now=NOW))
        outcomes.append(rng.random() < keenness**2)
    table = table_from_features(vectors, outcomes)
    model = train_model(table, config=TrainingConfig(seed=1, max_rounds=200))
    assert model.feature_names == feature_names()
    assert model.evaluation.roc_auc > 0.7

    scorer = Scorer(model)
    keen = [scorer.score(compute_features(history(rng, 0.95), now=NOW)).score for _ in range(50)]
    cold = [scorer.score(compute_features(history(rng, 0.05), now=NOW)).score for _ in range(50)]
    assert sum(keen) / 50 > sum(cold) / 50 + 30


def test_feature_tables_need_matching_outcomes_of_both_kinds() -> None:
    vector = compute_features([], now=NOW)
    with pytest.raises(ScoringInputError, match="2 feature vectors but 1 outcomes"):
        table_from_features([vector, vector], [True])
    with pytest.raises(ScoringInputError, match="the same"):
        table_from_features([vector] * 50, [False] * 50)
