"""The model registry in the database: numbering, promotion and rollback (audited), the rules for
becoming champion, and each process's in-memory champion swapped atomically."""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import update

from mcep.auth.models import Role
from mcep.runtime import Runtime
from mcep.scoring.champion import ModelCache
from mcep.scoring.commands import _transaction
from mcep.scoring.dataset import LabelledTable
from mcep.scoring.errors import ModelNotUsable, ModelVersionNotFound, RollbackUnavailable
from mcep.scoring.model import dump_model
from mcep.scoring.models import ModelChampion, ModelVersion
from mcep.scoring.registry import MODEL_NAME
from mcep.scoring.store import DatabaseModelRegistry, SyncModelRegistry
from mcep.scoring.training import TrainingConfig, train_model
from tests.conftest import make_actor
from tests.integration.scoring import builders as b


def bank_like_artifact() -> bytes:
    """A sound model whose inputs are not engagement features."""
    rng = np.random.default_rng(0)
    age = rng.uniform(20, 70, 600)
    y = (rng.random(600) < (age > 45) * 0.6 + 0.1).astype(np.int8)
    table = LabelledTable(pd.DataFrame({"age": age}), y, "y", "yes", {"age": "numeric"})
    return dump_model(train_model(table, config=TrainingConfig(num_threads=1, max_rounds=50)))


async def test_versions_are_numbered_described_and_audited(runtime: Runtime) -> None:
    first = await b.register(runtime, actor="cli:alice")
    second = await b.register(runtime)
    assert (first.version, second.version) == (1, 2)
    assert first.features == (
        "contacts_sent", "replies_count", "reply_rate", "intent_interest", "intent_objection",
    )  # fmt: skip
    assert first.created_by == "cli:alice" and first.source == {"kind": "test"}
    async with runtime.sessions() as session:
        registry = DatabaseModelRegistry(session, actor="x")
        assert await registry.artifact(MODEL_NAME, 1) == b.engagement_artifact()
        versions, total = await registry.versions(MODEL_NAME)
        assert total == 2 and [v.version for v in versions] == [2, 1]
        assert await registry.champion(MODEL_NAME) is None
    entries = await b.audit_actions(runtime, "model.registered")
    assert [(e.actor, e.object_id) for e in entries] == [
        ("cli:alice", "lead-score:1"),
        ("test", "lead-score:2"),
    ]


async def test_promote_and_roll_back_step_by_step_with_an_audit_trail(runtime: Runtime) -> None:
    for _ in range(3):
        await b.register(runtime)
    async with runtime.sessions() as session, session.begin():
        registry = DatabaseModelRegistry(session, actor="user:ops")
        await registry.promote(MODEL_NAME, 1)
        await registry.promote(MODEL_NAME, 3, reason="better on March data")
        await registry.promote(MODEL_NAME, 3)  # the champion again: nothing happens
        assert (await registry.champion(MODEL_NAME)).version == 3  # type: ignore[union-attr]
        assert (await registry.rollback(MODEL_NAME)).version == 1
        assert (await registry.champion(MODEL_NAME)).version == 1  # type: ignore[union-attr]
        with pytest.raises(RollbackUnavailable, match="no earlier champion"):
            await registry.rollback(MODEL_NAME)
        # A version rolled back from can be promoted again, and rolled back again.
        await registry.promote(MODEL_NAME, 3)
        assert (await registry.rollback(MODEL_NAME)).version == 1
    promoted = await b.audit_actions(runtime, "model.promoted")
    assert [(e.object_id, e.details["previous_version"]) for e in promoted] == [
        ("lead-score:1", None),
        ("lead-score:3", 1),
        ("lead-score:3", 1),
    ]
    assert promoted[1].details["reason"] == "better on March data"
    rolled = await b.audit_actions(runtime, "model.rolled_back")
    assert [(e.object_id, e.details["from_version"], e.actor) for e in rolled] == [
        ("lead-score:1", 3, "user:ops"),
        ("lead-score:1", 3, "user:ops"),
    ]


async def test_only_a_model_of_engagement_features_may_become_champion(runtime: Runtime) -> None:
    await b.register(runtime, artifact=bank_like_artifact())
    await b.register(runtime, artifact=b"not a model")
    async with runtime.sessions() as session, session.begin():
        registry = DatabaseModelRegistry(session, actor="test")
        with pytest.raises(ModelNotUsable, match="reads none of the prospect engagement features"):
            await registry.promote(MODEL_NAME, 1)
        with pytest.raises(ModelNotUsable, match="can't be loaded"):
            await registry.promote(MODEL_NAME, 2)
        with pytest.raises(ModelVersionNotFound, match="no version 9"):
            await registry.promote(MODEL_NAME, 9)
        assert await registry.champion(MODEL_NAME) is None
    assert await b.audit_actions(runtime, "model.promoted") == []


async def test_scopes_are_global_or_an_existing_pm(runtime: Runtime) -> None:
    pm = await make_actor(runtime, Role.PM)
    await b.register(runtime)
    async with runtime.sessions() as session, session.begin():
        registry = DatabaseModelRegistry(session, actor="test")
        for bad in ("everyone", "pm:123", f"pm:{uuid.uuid4()}"):
            with pytest.raises(ModelNotUsable, match="scope"):
                await registry.promote(MODEL_NAME, 1, scope=bad)
        await registry.promote(MODEL_NAME, 1, scope=f"PM:{str(pm.pm_id).upper()}")
        assert set(await registry.champions(MODEL_NAME)) == {f"pm:{pm.pm_id}"}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_the_in_memory_champion_is_swapped_atomically(runtime: Runtime) -> None:
    one = await b.register(runtime, promote=True)
    two = await b.register(runtime, artifact=b.engagement_artifact(1))
    clock = Clock()
    cache = ModelCache(max_age=5, clock=clock)
    async with runtime.sessions() as session:
        before = await cache.champions(session)
    assert before.by_scope["global"].version_id == one.id

    async with runtime.sessions() as session, session.begin():
        await DatabaseModelRegistry(session, actor="test").promote(MODEL_NAME, two.version)
    async with runtime.sessions() as session:
        clock.now = 4.9  # younger than max_age: answered from memory, no query
        assert (await cache.champions(session)) is before
        clock.now = 5.0
        after = await cache.champions(session)
    assert after.by_scope["global"].version_id == two.id
    # The snapshot a batch took is untouched: it keeps scoring with the model it started with.
    assert before.by_scope["global"].version_id == one.id
    assert after.for_pm(uuid.uuid4()) is after.by_scope["global"]

    async with runtime.sessions() as session, session.begin():
        await DatabaseModelRegistry(session, actor="test").rollback(MODEL_NAME)
    async with runtime.sessions() as session:
        back = await cache.champions(session, force=True)
    # Artifacts never change: going back reuses the scorer already in memory.
    assert back.by_scope["global"].scorer is before.by_scope["global"].scorer


async def test_a_champion_that_fails_to_load_leaves_the_previous_one_in_charge(
    runtime: Runtime,
) -> None:
    one = await b.register(runtime, promote=True)
    broken = await b.register(runtime, artifact=b.engagement_artifact(1))
    cache = ModelCache(max_age=0)
    async with runtime.sessions() as session:
        await cache.champions(session)
    async with runtime.sessions() as session, session.begin():
        # Damage the artifact behind promote's back, then point the champion at it.
        await session.execute(
            update(ModelVersion).where(ModelVersion.id == broken.id).values(artifact=b"{}")
        )
        await session.execute(update(ModelChampion).values(version_id=broken.id))
    async with runtime.sessions() as session:
        champions = await cache.champions(session)
    assert champions.by_scope["global"].version_id == one.id


async def test_the_synchronous_registry_commits_each_call(runtime: Runtime) -> None:
    """What ``train-csv`` uses: each call its own engine and transaction."""
    registry = SyncModelRegistry(lambda: _transaction(runtime.settings), actor="cli:bob")

    def work() -> tuple[int, int | None]:
        info = registry.register(MODEL_NAME, artifact=b.engagement_artifact(), metrics={"x": 1.0})
        registry.promote(MODEL_NAME, info.version)
        champion = registry.champion(MODEL_NAME)
        return info.version, champion.version if champion else None

    assert await asyncio.to_thread(work) == (1, 1)
    async with runtime.sessions() as session:
        [info] = (await DatabaseModelRegistry(session, actor="x").versions(MODEL_NAME))[0]
    assert info.created_by == "cli:bob" and info.metrics == {"x": 1.0}
