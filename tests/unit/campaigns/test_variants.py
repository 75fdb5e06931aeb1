"""Variant assignment is deterministic and follows the weights."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from mcep.campaigns.variants import WeightedVariant, assign_variant

CAMPAIGN = uuid.UUID("00000000-0000-4000-8000-000000000001")
PROSPECTS = [uuid.UUID(int=n) for n in range(20_000)]


def test_same_inputs_same_variant_and_campaigns_shuffle_independently() -> None:
    arms = [WeightedVariant("a"), WeightedVariant("b")]
    first = [assign_variant(CAMPAIGN, p, arms) for p in PROSPECTS[:500]]
    assert first == [assign_variant(CAMPAIGN, p, arms) for p in PROSPECTS[:500]]
    other = [assign_variant(uuid.uuid4(), p, arms) for p in PROSPECTS[:500]]
    assert first != other


def test_weights_are_respected() -> None:
    arms = [WeightedVariant("a", 3), WeightedVariant("b", 1), WeightedVariant("off", 0)]
    counts = Counter(assign_variant(CAMPAIGN, p, arms) for p in PROSPECTS)
    assert counts["off"] == 0
    assert abs(counts["a"] / len(PROSPECTS) - 0.75) < 0.015


def test_no_positive_weight_is_an_error() -> None:
    with pytest.raises(ValueError, match="positive weight"):
        assign_variant(CAMPAIGN, PROSPECTS[0], [WeightedVariant("a", 0)])
