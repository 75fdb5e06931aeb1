"""What a campaign launch asks of the experiments domain: how to assign variants, that the
held remainder can be rendered, and the record of who landed where.

:mod:`mcep.campaigns.launch` calls these; nothing here imports the launch, so the release of
a remainder (:mod:`mcep.experiments.rollout`) can reuse the launch's own steps.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from mcep.audit import service as audit
from mcep.campaigns.models import Campaign, Template
from mcep.campaigns.rendering import CompiledTemplate, RenderError, recipient_context, render
from mcep.campaigns.repository import RecipientRow
from mcep.campaigns.variants import ArmSettings, ArmSkip, VariantPlan, WeightedVariant
from mcep.contacts.crypto import Keyring
from mcep.contacts.models import Channel
from mcep.errors import Conflict, ValidationFailed
from mcep.experiments import repository
from mcep.experiments.design import Cohort, ExperimentStatus, Mode
from mcep.experiments.models import Experiment, ExperimentArm


def arm_settings(arm: ExperimentArm) -> ArmSettings:
    return ArmSettings(
        name=arm.name,
        weight=arm.weight,
        send_offset=timedelta(minutes=arm.send_offset_minutes),
        channel_order=tuple(Channel(c) for c in arm.channel_order),
    )


def plan_of(experiment: Experiment) -> VariantPlan:
    """The experiment's assignment: keyed on its id, control first."""
    test_fraction = 1.0 if experiment.mode is Mode.FIXED else experiment.test_fraction or 1.0
    return VariantPlan(
        key=str(experiment.id),
        arms=tuple(arm_settings(a) for a in experiment.arms),
        holdout=experiment.holdout,
        test_fraction=test_fraction,
        experiment_id=experiment.id,
    )


async def variant_plan(session: AsyncSession, campaign: Campaign) -> VariantPlan:
    """The campaign's experiment design, or plain weighted variants when it has none."""
    experiment = await repository.for_campaign(session, campaign.id)
    if experiment is not None:
        return plan_of(experiment)
    weighted = [WeightedVariant(v.name, v.weight) for v in campaign.variants]
    return VariantPlan.of_campaign(campaign.id, weighted)


def check_renders(
    held: Sequence[uuid.UUID],
    rows: Mapping[uuid.UUID, RecipientRow],
    templates: Mapping[str, tuple[Template, CompiledTemplate]],
    *,
    campaign: Campaign,
    keyring: Keyring,
) -> None:
    """Every arm must render for every held recipient, since any arm may win: a missing
    variable fails the launch now (a 422 naming it) rather than the release later."""
    for pid in held:
        row = rows[pid]
        assert row.wrapped_key is not None and row.name_enc is not None
        context = recipient_context(
            name=keyring.unwrap(row.wrapped_key).open("name", row.name_enc),
            timezone=row.timezone,
            campaign=campaign.name,
            attributes=row.attributes,
        )
        for name, (template, compiled) in templates.items():
            try:
                render(compiled, context)
            except RenderError as exc:
                raise ValidationFailed.of(
                    f"variants.{name}.{exc.field}",
                    f"{exc} (template {template.name!r}, prospect {pid}, held for the winner)",
                ) from exc


async def record_launch(
    session: AsyncSession,
    variants: VariantPlan,
    *,
    queued: Sequence[tuple[uuid.UUID, str]],
    skipped: Sequence[tuple[uuid.UUID, str]],
    actor: str,
    now: datetime,
) -> None:
    """Write every assignment of an experiment's launch (one statement) and start it.

    ``queued`` pairs each messaged prospect with its arm; of ``skipped``, the hold-out and
    the held remainder are recorded (the rest were never eligible, so never assigned).
    """
    if variants.experiment_id is None:
        return
    experiment = await session.get(Experiment, variants.experiment_id, with_for_update=True)
    assert experiment is not None
    rows = [_assignment(experiment.id, pid, Cohort.TEST, arm, now) for pid, arm in queued]
    rows += [
        _assignment(experiment.id, pid, _HELD[reason], None, now)
        for pid, reason in skipped
        if reason in _HELD
    ]
    await repository.insert_assignments(session, rows)
    await _start(session, experiment, now=now)
    groups = Counter(arm for _, arm in queued)
    groups.update(_HELD[reason].value for _, reason in skipped if reason in _HELD)
    await audit.append(
        session,
        actor=actor,
        action="experiment.started",
        object_type="experiment",
        object_id=str(experiment.id),
        details={
            "pm_id": str(experiment.pm_id),
            "campaign_id": str(experiment.campaign_id),
            "groups": dict(sorted(groups.items())),
            "deadline": experiment.deadline.isoformat() if experiment.deadline else None,
        },
    )


_HELD = {ArmSkip.HOLDOUT.value: Cohort.HOLDOUT, ArmSkip.HELD.value: Cohort.REMAINDER}


async def _start(session: AsyncSession, experiment: Experiment, *, now: datetime) -> None:
    """Running from now; a test phase given as a duration ends that long after the start."""
    campaign = await session.get(Campaign, experiment.campaign_id)
    start = max(now, campaign.start_at or now) if campaign is not None else now
    if experiment.deadline is None and experiment.deadline_hours is not None:
        experiment.deadline = start + timedelta(hours=experiment.deadline_hours)
    if experiment.deadline is not None and experiment.deadline <= start:
        raise Conflict(
            f"the experiment's deadline ({experiment.deadline.isoformat()}) is before the "
            "campaign starts: move it before launching"
        )
    experiment.status = ExperimentStatus.RUNNING
    experiment.launched_at = now
    await session.flush()


def _assignment(
    experiment_id: uuid.UUID, prospect_id: uuid.UUID, cohort: Cohort, arm: str | None, now: datetime
) -> dict[str, object]:
    return {
        "experiment_id": experiment_id,
        "prospect_id": prospect_id,
        "cohort": cohort,
        "arm": arm,
        "assigned_at": now,
        "released_at": None,
        "outcome": None,
    }
