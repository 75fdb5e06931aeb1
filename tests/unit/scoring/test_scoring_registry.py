"""The in-memory model registry: versions, champion, promotion and rollback."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from mcep.scoring.errors import ModelVersionNotFound, RollbackUnavailable
from mcep.scoring.registry import InMemoryModelRegistry, ModelRegistry

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


@pytest.fixture
def registry() -> ModelRegistry:
    return InMemoryModelRegistry(clock=Clock())


def test_versions_are_numbered_per_family_and_keep_their_bytes(registry: ModelRegistry) -> None:
    first = registry.register("lead-score", artifact=b"one", metrics={"roc_auc": 0.8})
    second = registry.register("lead-score", artifact=b"two", metrics={"roc_auc": 0.82})
    other = registry.register("churn", artifact=b"three", metrics={})
    assert (first.version, second.version, other.version) == (1, 2, 1)
    assert registry.artifact("lead-score", 1) == b"one"
    assert second.sha256 == hashlib.sha256(b"two").hexdigest() and second.size == 3
    assert second.metrics == {"roc_auc": 0.82}
    assert first.created_at == T0 + timedelta(minutes=1) < second.created_at


def test_registering_does_not_promote(registry: ModelRegistry) -> None:
    registry.register("lead-score", artifact=b"one", metrics={})
    assert registry.champion("lead-score") is None


def test_promote_and_roll_back_step_by_step(registry: ModelRegistry) -> None:
    for body in (b"a", b"b", b"c"):
        registry.register("lead-score", artifact=body, metrics={})
    registry.promote("lead-score", 1)
    registry.promote("lead-score", 3)
    registry.promote("lead-score", 3)  # promoting the champion again changes nothing
    assert registry.champion("lead-score").version == 3  # type: ignore[union-attr]
    assert registry.rollback("lead-score").version == 1
    assert registry.champion("lead-score").version == 1  # type: ignore[union-attr]
    with pytest.raises(RollbackUnavailable, match="no earlier champion"):
        registry.rollback("lead-score")


def test_unknown_versions_are_refused(registry: ModelRegistry) -> None:
    registry.register("lead-score", artifact=b"a", metrics={})
    with pytest.raises(ModelVersionNotFound, match="no version 2"):
        registry.promote("lead-score", 2)
    with pytest.raises(ModelVersionNotFound):
        registry.artifact("churn", 1)
    assert registry.champion("churn") is None


def test_metrics_are_a_snapshot(registry: ModelRegistry) -> None:
    metrics = {"roc_auc": 0.8}
    info = registry.register("lead-score", artifact=b"a", metrics=metrics)
    metrics["roc_auc"] = 0.99
    assert info.metrics["roc_auc"] == 0.8
