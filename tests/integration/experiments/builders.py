"""Builders for experiment tests: an experiment on a fresh campaign, outcome events written in
bulk as the dispatch worker and the webhooks would, and one pass of the worker job."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from mcep.audit.models import AuditEntry
from mcep.campaigns.models import Campaign
from mcep.dispatch import repository as dispatch_repository
from mcep.dispatch.models import Message
from mcep.experiments import service
from mcep.experiments.models import Experiment, ExperimentAssignment
from mcep.experiments.schemas import ExperimentCreate
from mcep.experiments.tasks import evaluate_running
from mcep.runtime import Runtime
from tests.conftest import Actor
from tests.integration.campaigns.builders import (
    add_campaign,
    add_profile,
    add_template,
    launch_campaign,
    principal,
)

LAUNCH = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday, inside the default window


async def add_experiment(
    runtime: Runtime,
    owner: Actor,
    prospects: Sequence[uuid.UUID],
    *,
    arms: int = 2,
    bodies: Sequence[str] | None = None,
    **fields: Any,
) -> tuple[uuid.UUID, uuid.UUID]:
    """A draft campaign to ``prospects`` (caps high enough for repeated campaigns) and an
    experiment on it with arms ``a``, ``b``, ... (``a`` is control). Returns both ids."""
    profile = await add_profile(runtime, owner, cap_per_day=100, cap_per_week=700)
    campaign_id = await add_campaign(runtime, owner, prospect_ids=prospects, profile_id=profile)
    names = "abcdefgh"[:arms]
    templates = [
        await add_template(
            runtime, owner, body=(bodies[i] if bodies else f"Arm {name} {{{{ name }}}}")
        )
        for i, name in enumerate(names)
    ]
    variants = fields.pop("variants", None) or [
        {"name": name, "template_id": str(t)} for name, t in zip(names, templates, strict=True)
    ]
    body = {"campaign_id": str(campaign_id), "variants": variants, **fields}
    async with runtime.sessions() as session, session.begin():
        experiment = await service.create_experiment(
            session, principal(owner), ExperimentCreate.model_validate(body), now=LAUNCH
        )
    return campaign_id, experiment.id


async def launch(runtime: Runtime, owner: Actor, campaign_id: uuid.UUID) -> Campaign:
    return await launch_campaign(runtime, owner, campaign_id, now=LAUNCH)


async def experiment(runtime: Runtime, experiment_id: uuid.UUID) -> Experiment:
    async with runtime.sessions() as session:
        found = await session.get(Experiment, experiment_id)
        assert found is not None
        return found


async def assignments(runtime: Runtime, experiment_id: uuid.UUID) -> list[ExperimentAssignment]:
    async with runtime.sessions() as session:
        stmt = select(ExperimentAssignment).where(
            ExperimentAssignment.experiment_id == experiment_id
        )
        return list((await session.scalars(stmt)).all())


async def messages(runtime: Runtime, campaign_id: uuid.UUID) -> list[Message]:
    async with runtime.sessions() as session:
        stmt = select(Message).where(Message.campaign_id == campaign_id).order_by(Message.id)
        return list((await session.scalars(stmt)).all())


def outcome_events(
    sent: Iterable[Message], *, kind: str, at: datetime, campaign: bool = True
) -> list[dict[str, Any]]:
    """Event rows of ``kind`` about each message, as the worker or a webhook writes them;
    with ``campaign=False`` a prospect-level event (an opt-out or a qualification)."""
    return [
        {
            "at": at,
            "kind": kind,
            "campaign_id": m.campaign_id if campaign else None,
            "variant": m.variant if campaign else None,
            "channel": m.channel,
            "device_id": m.device_id,
            "prospect_id": m.prospect_id,
            "pm_id": m.pm_id,
            "message_id": m.id if campaign else None,
            "details": {},
        }
        for m in sent
    ]


async def insert_events(runtime: Runtime, rows: Sequence[dict[str, Any]]) -> None:
    """All rows in one set-based statement, in their own transaction."""
    async with runtime.sessions() as session, session.begin():
        await dispatch_repository.insert_events(session, rows)


async def run_job(runtime: Runtime, *, now: datetime) -> int:
    """One pass of the experiments worker job at the injected time."""
    return await evaluate_running(runtime, now=now)


async def audit_entries(runtime: Runtime, action: str, object_id: uuid.UUID) -> list[AuditEntry]:
    async with runtime.sessions() as session:
        stmt = select(AuditEntry).where(
            AuditEntry.action == action, AuditEntry.object_id == str(object_id)
        )
        return list((await session.scalars(stmt.order_by(AuditEntry.id))).all())
