"""Builders for scoring tests: a small engagement model, event streams, registered champions.

The model is trained on synthetic engagement vectors where an interested reply makes a lead
very likely and silence makes it unlikely, so a test can push a prospect over a threshold with
one reply.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from scipy.special import expit
from sqlalchemy import func, insert, select

from mcep.audit.models import AuditEntry
from mcep.contacts.models import Prospect
from mcep.dispatch.models import Event
from mcep.inbound.models import InboundMessage
from mcep.runtime import Runtime
from mcep.scoring.dataset import table_from_features
from mcep.scoring.model import dump_model
from mcep.scoring.registry import MODEL_NAME, ModelVersionInfo
from mcep.scoring.store import DatabaseModelRegistry
from mcep.scoring.training import TrainingConfig, train_model

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
INTERESTED = "Sounds interesting, tell me more please!"
NOT_INTERESTED = "Not interested, thanks."


def synthetic_vectors(
    rows: int, *, seed: int, signal: float = 1.0
) -> tuple[list[dict[str, float]], list[bool]]:
    """Engagement vectors and outcomes; ``signal`` 0 makes the outcome independent of them,
    a negative one reverses the relation."""
    rng = np.random.default_rng(seed)
    vectors, outcomes = [], []
    for _ in range(rows):
        sent = int(rng.integers(1, 4))
        replied = rng.random() < 0.4
        interest = replied and rng.random() < 0.5
        objection = replied and not interest and rng.random() < 0.6
        logit = -3.0 + signal * (5.5 * interest + 0.8 * replied - 1.5 * objection)
        vectors.append(
            {
                "contacts_sent": float(sent),
                "replies_count": float(replied),
                "reply_rate": float(replied) / sent,
                "intent_interest": float(interest),
                "intent_objection": float(objection),
            }
        )
        outcomes.append(bool(rng.random() < expit(logit)))
    return vectors, outcomes


@functools.cache
def engagement_artifact(seed: int = 0, signal: float = 1.0) -> bytes:
    """A trained lead-score model over five engagement features (cached per seed/signal)."""
    vectors, outcomes = synthetic_vectors(3000, seed=seed, signal=signal)
    table = table_from_features(vectors, outcomes)
    model = train_model(table, config=TrainingConfig(seed=seed, num_threads=1, max_rounds=200))
    return dump_model(model)


async def register(
    runtime: Runtime,
    *,
    artifact: bytes | None = None,
    promote: bool = False,
    scope: str = "global",
    actor: str = "test",
) -> ModelVersionInfo:
    """Register (and optionally promote) a version in its own committed transaction."""
    async with runtime.sessions() as session, session.begin():
        registry = DatabaseModelRegistry(session, actor=actor)
        info = await registry.register(
            MODEL_NAME,
            artifact=artifact or engagement_artifact(),
            metrics={"roc_auc": 0.9},
            source={"kind": "test"},
        )
        if promote:
            await registry.promote(MODEL_NAME, info.version, scope=scope)
    return info


def event(
    kind: str,
    prospect_id: uuid.UUID,
    pm_id: uuid.UUID,
    *,
    at: datetime,
    channel: str = "telegram",
    campaign_id: uuid.UUID | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "at": at,
        "kind": kind,
        "campaign_id": campaign_id,
        "variant": "A" if campaign_id else None,
        "channel": channel,
        "device_id": None,
        "prospect_id": prospect_id,
        "pm_id": pm_id,
        "message_id": None,
        "details": details or {},
    }


async def add_events(runtime: Runtime, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Append events in one committed transaction; returns their ids in order."""
    async with runtime.sessions() as session, session.begin():
        ids = []
        for row in rows:
            result = await session.execute(insert(Event).values(**row).returning(Event.id))
            ids.append(int(result.scalar_one()))
    return ids


async def reply(
    runtime: Runtime,
    prospect_id: uuid.UUID,
    pm_id: uuid.UUID,
    text: str,
    *,
    at: datetime,
    channel: str = "telegram",
) -> dict[str, Any]:
    """Store an inbound message sealed under the prospect's key, as inbound does; returns the
    matching ``replied`` event row (not yet inserted)."""
    provider_id = f"evt-{uuid.uuid4().hex[:12]}"
    row_id = uuid.uuid4()
    async with runtime.sessions() as session, session.begin():
        wrapped = await session.scalar(
            select(Prospect.wrapped_key).where(Prospect.id == prospect_id)
        )
        assert wrapped is not None
        sealed = runtime.keyring.unwrap(wrapped).seal(f"inbound:{row_id}", text)
        session.add(
            InboundMessage(
                id=row_id,
                at=at,
                channel=channel,
                event_id=provider_id,
                prospect_id=prospect_id,
                pm_id=pm_id,
                text_enc=sealed,
                text_sha256="0" * 64,
                is_stop=False,
            )
        )
    return event(
        "replied",
        prospect_id,
        pm_id,
        at=at,
        channel=channel,
        details={"stop": False, "provider_event_id": provider_id},
    )


def contact(
    prospect_id: uuid.UUID, pm_id: uuid.UUID, *, at: datetime, campaign_id: uuid.UUID | None = None
) -> list[dict[str, Any]]:
    """A message's life: queued, sent, delivered, read."""
    campaign_id = campaign_id or uuid.uuid4()
    return [
        event(kind, prospect_id, pm_id, at=at + i * timedelta(minutes=1), campaign_id=campaign_id)
        for i, kind in enumerate(("queued", "sent", "delivered", "read"))
    ]


async def audit_actions(runtime: Runtime, action: str) -> list[AuditEntry]:
    async with runtime.sessions() as session:
        rows = await session.scalars(
            select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)
        )
        return list(rows)


async def count(runtime: Runtime, stmt: Any) -> int:
    async with runtime.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)
