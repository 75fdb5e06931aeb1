"""Experiment rules for the API: creation on a draft campaign, deletion before launch, and
results from the event log. The worker's side is in :mod:`mcep.experiments.evaluation`.

Flushes; never commits: the request owns the transaction. Every change is audited.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from mcep.audit import service as audit
from mcep.auth.principal import Permission, Principal
from mcep.campaigns import repository as campaigns_repository
from mcep.campaigns.models import Campaign, CampaignStatus, CampaignVariant
from mcep.errors import Conflict, NotFound, ValidationFailed
from mcep.experiments import repository
from mcep.experiments.decision import decide
from mcep.experiments.design import (
    RESERVED_NAMES,
    ExperimentDesign,
    ExperimentStatus,
    Mode,
)
from mcep.experiments.launching import plan_of
from mcep.experiments.models import Experiment, ExperimentArm
from mcep.experiments.results import (
    ExperimentCounts,
    build_results,
    decision_view,
    tallies,
)
from mcep.experiments.schemas import (
    ArmOut,
    DecisionOut,
    ExperimentCreate,
    ExperimentOut,
    ExperimentResults,
    Guardrail,
)

DEFAULT_MIN_SHARE = 0.05
DEFAULT_BATCH_MINUTES = 60


# --- creation ------------------------------------------------------------------------------


def check_design(data: ExperimentCreate, *, now: datetime) -> None:
    """Rules that span fields; each failure names the field to fix."""
    names = [arm.name for arm in data.variants]
    if len(set(names)) != len(names):
        raise ValidationFailed.of("variants", "variant names must be unique")
    for i, name in enumerate(names):
        if name in RESERVED_NAMES:
            raise ValidationFailed.of(f"variants.{i}.name", f"{name!r} is reserved")
    if data.control is not None and data.control not in names:
        raise ValidationFailed.of("control", f"{data.control!r} is not one of the variants")
    _check_mode(data, now=now)


def _check_mode(data: ExperimentCreate, *, now: datetime) -> None:
    given = {f for f in ("test_fraction", "deadline", "deadline_hours") if getattr(data, f)}
    given |= {f for f in ("min_share", "batch_minutes") if getattr(data, f) is not None}
    allowed = {
        Mode.FIXED: set(),
        Mode.TEST_THEN_SEND: {"test_fraction", "deadline", "deadline_hours"},
        Mode.THOMPSON: {"test_fraction", "min_share", "batch_minutes"},
    }[data.mode]
    for name in sorted(given - allowed):
        raise ValidationFailed.of(name, f"does not apply to a {data.mode} experiment")
    if data.mode is not Mode.FIXED and data.test_fraction is None:
        raise ValidationFailed.of("test_fraction", f"a {data.mode} experiment needs one")
    if data.mode is Mode.TEST_THEN_SEND:
        if (data.deadline is None) == (data.deadline_hours is None):
            raise ValidationFailed.of("deadline", "give either deadline or deadline_hours")
        if data.deadline is not None and data.deadline <= now:
            raise ValidationFailed.of("deadline", "must be in the future")
    if data.min_share is not None and data.min_share * len(data.variants) > 1:
        raise ValidationFailed.of(
            "min_share", f"{len(data.variants)} arms can't each have {data.min_share:.0%}"
        )


def _arms(data: ExperimentCreate) -> list[ExperimentArm]:
    """The arms, control first."""
    control = data.control or data.variants[0].name
    ordered = sorted(data.variants, key=lambda arm: arm.name != control)
    return [
        ExperimentArm(
            name=arm.name,
            position=i,
            template_id=arm.template_id,
            weight=arm.weight,
            send_offset_minutes=arm.send_offset_minutes,
            channel_order=[c.value for c in arm.channel_order],
        )
        for i, arm in enumerate(ordered)
    ]


async def _draft_campaign(
    session: AsyncSession, principal: Principal, campaign_id: uuid.UUID
) -> Campaign:
    try:
        campaign = await campaigns_repository.get_owned(
            session, principal, Campaign, campaign_id, for_update=True
        )
    except NotFound as exc:
        raise ValidationFailed.of("campaign_id", "no such campaign") from exc
    if campaign.status is not CampaignStatus.DRAFT:
        raise Conflict(
            f"only a draft campaign can get an experiment; this one is {campaign.status}"
        )
    if await repository.for_campaign(session, campaign.id) is not None:
        raise Conflict("this campaign already has an experiment")
    return campaign


async def create_experiment(
    session: AsyncSession, principal: Principal, data: ExperimentCreate, *, now: datetime
) -> Experiment:
    """An experiment on the caller's draft campaign, whose variants become the arms."""
    principal.require(Permission.OWNED_WRITE)
    pm_id = principal.owner_pm_id()
    check_design(data, now=now)
    campaign = await _draft_campaign(session, principal, data.campaign_id)
    found = await campaigns_repository.templates_by_id(
        session, principal, [arm.template_id for arm in data.variants]
    )
    for i, arm in enumerate(data.variants):
        if arm.template_id not in found:
            raise ValidationFailed.of(f"variants.{i}.template_id", "no such template")
    experiment = _new_experiment(data, campaign, pm_id=pm_id)
    # The campaign shows, and its launch renders, exactly the experiment's arms.
    campaign.variants = [
        CampaignVariant(name=a.name, template_id=a.template_id, weight=a.weight)
        for a in experiment.arms
    ]
    session.add(experiment)
    await session.flush()
    await audit_experiment(
        session, principal.actor, "experiment.created", experiment, mode=data.mode.value
    )
    return experiment


def _new_experiment(data: ExperimentCreate, campaign: Campaign, *, pm_id: uuid.UUID) -> Experiment:
    arms = _arms(data)
    thompson = data.mode is Mode.THOMPSON
    min_share = data.min_share if data.min_share is not None else DEFAULT_MIN_SHARE
    return Experiment(
        pm_id=pm_id,
        campaign_id=campaign.id,
        name=data.name or f"{campaign.name} experiment",
        mode=data.mode,
        status=ExperimentStatus.DRAFT,
        control=arms[0].name,
        metric=data.metric,
        max_opt_out_rate=data.guardrail.max_rate if data.guardrail else None,
        alpha=data.alpha,
        holdout=data.holdout,
        test_fraction=data.test_fraction,
        deadline=data.deadline,
        deadline_hours=data.deadline_hours,
        fallback=data.fallback,
        min_share=min_share if thompson else None,
        batch_minutes=(data.batch_minutes or DEFAULT_BATCH_MINUTES) if thompson else None,
        decision={},
        arms=arms,
    )


async def delete_experiment(
    session: AsyncSession, principal: Principal, experiment_id: uuid.UUID
) -> None:
    """Only before launch; the campaign keeps the arms as its variants."""
    principal.require(Permission.OWNED_WRITE)
    experiment = await repository.get_owned(session, principal, experiment_id, for_update=True)
    if experiment.status is not ExperimentStatus.DRAFT:
        raise Conflict(f"a {experiment.status} experiment can't be deleted")
    await session.delete(experiment)
    await session.flush()
    await audit_experiment(session, principal.actor, "experiment.deleted", experiment)


async def audit_experiment(
    session: AsyncSession, actor: str, action: str, experiment: Experiment, **details: Any
) -> None:
    await audit.append(
        session,
        actor=actor,
        action=action,
        object_type="experiment",
        object_id=str(experiment.id),
        details={
            "pm_id": str(experiment.pm_id),
            "campaign_id": str(experiment.campaign_id),
            **details,
        },
    )


def experiment_out(experiment: Experiment) -> ExperimentOut:
    """The API view of an experiment."""
    guardrail = None
    if experiment.max_opt_out_rate is not None:
        guardrail = Guardrail(max_rate=experiment.max_opt_out_rate)
    return ExperimentOut(
        id=experiment.id,
        pm_id=experiment.pm_id,
        campaign_id=experiment.campaign_id,
        name=experiment.name,
        mode=experiment.mode,
        status=experiment.status,
        control=experiment.control,
        variants=[ArmOut.model_validate(a, from_attributes=True) for a in experiment.arms],
        holdout=experiment.holdout,
        metric=experiment.metric,
        guardrail=guardrail,
        alpha=experiment.alpha,
        test_fraction=experiment.test_fraction,
        deadline=experiment.deadline,
        deadline_hours=experiment.deadline_hours,
        fallback=experiment.fallback,
        min_share=experiment.min_share,
        batch_minutes=experiment.batch_minutes,
        launched_at=experiment.launched_at,
        decided_at=experiment.decided_at,
        winner=experiment.winner,
        decision=experiment.decision,
        created_at=experiment.created_at,
        updated_at=experiment.updated_at,
    )


# --- results -------------------------------------------------------------------------------


def design_of(experiment: Experiment) -> ExperimentDesign:
    """The experiment's design as the pure statistics take it."""
    return ExperimentDesign(
        arms=tuple(a.name for a in experiment.arms),
        weights=tuple(a.weight for a in experiment.arms),
        metric=experiment.metric,
        alpha=experiment.alpha,
        holdout=experiment.holdout,
        mode=experiment.mode,
        test_fraction=plan_of(experiment).test_fraction,
        max_opt_out_rate=experiment.max_opt_out_rate,
        fallback=experiment.fallback,
    )


def _decision(
    experiment: Experiment, design: ExperimentDesign, counts: ExperimentCounts, now: datetime
) -> DecisionOut | None:
    """The recorded decision, or while testing what the evidence says at ``now``."""
    if experiment.mode is not Mode.TEST_THEN_SEND or experiment.launched_at is None:
        return None
    if "decision" in experiment.decision:
        return DecisionOut.model_validate(experiment.decision["decision"])
    if experiment.status is not ExperimentStatus.RUNNING or experiment.deadline is None:
        return None
    live = decide(tallies(design, counts), design.split_plan(experiment.deadline), now=now)
    return decision_view(
        live, design, recorded=False, decided_at=None, deadline=experiment.deadline
    )


async def results(
    session: AsyncSession, principal: Principal, experiment_id: uuid.UUID, *, now: datetime
) -> ExperimentResults:
    """Counts from the event log, through the pure results builder."""
    principal.require(Permission.OWNED_READ)
    experiment = await repository.get_owned(session, principal, experiment_id)
    design = design_of(experiment)
    counts = await repository.group_counts(session, experiment, now=now)
    return build_results(
        design,
        counts,
        experiment_id=experiment.id,
        status=experiment.status,
        as_of=now,
        decision=_decision(experiment, design, counts, now),
    )
