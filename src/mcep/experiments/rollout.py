"""Releasing held recipients: the test-then-send remainder to its winner, or a Thompson batch.

A release is a late launch of part of the audience, so it runs the launch's own steps:
eligibility checked again now (an opt-out since launch is respected), the arm's channel
preference, device allocation, the recipient's send window after the arm's offset, bodies
rendered and sealed under each recipient's key, then one set-based insert of the messages
and one of their events. Each released prospect's outcome is written to its assignment.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from mcep.audit.chain import merkle_root
from mcep.auth.models import Role
from mcep.auth.principal import Principal
from mcep.campaigns import launch
from mcep.campaigns import repository as campaigns_repository
from mcep.campaigns.models import Campaign, CampaignStatus
from mcep.campaigns.repository import RecipientRow
from mcep.campaigns.rules import rules_of
from mcep.campaigns.variants import VariantPlan
from mcep.contacts.crypto import Keyring
from mcep.dispatch import repository as dispatch_repository
from mcep.dispatch.models import EventKind
from mcep.errors import ValidationFailed
from mcep.experiments import repository

RENDER_FAILED = "render_failed"
QUEUED = "queued"
# The worker acts for the campaign's PM; this principal only scopes its reads to that PM.
_WORKER = uuid.UUID(int=0)


@dataclass(frozen=True, slots=True)
class Release:
    """What one release did, as the audit entry and the experiment record keep it."""

    queued: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    by_arm: dict[str, int] = field(default_factory=dict)
    merkle_root: str = ""
    reopened: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "queued": self.queued,
            "skipped": self.skipped,
            "by_arm": self.by_arm,
            "messages_merkle_root": self.merkle_root,
            "campaign_reopened": self.reopened,
        }


def acting_for(pm_id: uuid.UUID) -> Principal:
    """The worker, reading as the campaign's PM would (and never another PM's rows)."""
    return Principal(_WORKER, "experiments@worker", Role.PM, pm_id)


async def release(
    session: AsyncSession,
    campaign: Campaign,
    prospect_ids: Sequence[uuid.UUID],
    *,
    experiment_id: uuid.UUID,
    variants: VariantPlan,
    keyring: Keyring,
    now: datetime,
) -> Release:
    """Queue ``prospect_ids`` as ``variants`` assigns them; flushes, never commits."""
    if not prospect_ids:
        return Release()
    principal = acting_for(campaign.pm_id)
    rows, plan = await _plan(session, principal, campaign, prospect_ids, variants, now=now)
    templates = await launch.compiled_variants(session, principal, campaign)
    messages, unrenderable = [], []
    for item in plan.planned:
        try:
            template = templates[item.variant]
            row = rows[item.prospect_id]
            messages.append(
                launch.message_row(item, row, template, campaign=campaign, keyring=keyring, now=now)
            )
        except ValidationFailed:
            # The launch checked every arm renders for everyone held; an attribute removed
            # since then skips that one recipient, rather than failing every later release.
            unrenderable.append(item.prospect_id)
    await dispatch_repository.insert_messages(session, messages)
    events = launch.event_rows(messages, plan.skipped, campaign=campaign, now=now)
    events += [_render_failed(campaign, pid, now) for pid in unrenderable]
    await dispatch_repository.insert_events(session, events)
    outcomes = _outcomes(messages, plan, unrenderable, variants)
    await repository.mark_released(session, experiment_id, outcomes, now=now)
    # Dispatch completes a campaign once its test messages are all done; the remainder is
    # more of the same campaign, so it runs again.
    reopened = bool(messages) and campaign.status is CampaignStatus.COMPLETED
    if reopened:
        campaign.status = CampaignStatus.RUNNING
    await session.flush()
    skipped = Counter(outcome for _, outcome in outcomes.values() if outcome != QUEUED)
    return Release(
        queued=len(messages),
        skipped=dict(sorted(skipped.items())),
        by_arm=dict(sorted(Counter(m["variant"] for m in messages).items())),
        merkle_root=merkle_root(sorted(m["id"].bytes for m in messages)),
        reopened=reopened,
    )


async def _plan(
    session: AsyncSession,
    principal: Principal,
    campaign: Campaign,
    prospect_ids: Sequence[uuid.UUID],
    variants: VariantPlan,
    *,
    now: datetime,
) -> tuple[dict[uuid.UUID, RecipientRow], launch.Plan]:
    """The launch's reads and decisions, for these prospects only and as of now."""
    rules = rules_of(await campaigns_repository.profile_for(session, campaign))
    rows, facts = await launch.gather_facts(session, principal, prospect_ids, now=now)
    allocator = await launch.build_allocator(
        session, pm_id=campaign.pm_id, prospect_ids=list(rows), now=now
    )
    plan = launch.plan_launch(
        prospect_ids,
        facts,
        {pid: row.timezone for pid, row in rows.items()},
        rules=rules,
        allocator=allocator,
        variants=variants,
        start=max(now, campaign.start_at or now),
    )
    return rows, plan


def _outcomes(
    messages: Sequence[dict[str, Any]],
    plan: launch.Plan,
    unrenderable: Sequence[uuid.UUID],
    variants: VariantPlan,
) -> dict[uuid.UUID, tuple[str | None, str]]:
    """Each released prospect's arm and what became of it."""
    outcomes: dict[uuid.UUID, tuple[str | None, str]] = {
        m["prospect_id"]: (m["variant"], QUEUED) for m in messages
    }
    for pid, reason in plan.skipped:
        outcomes[pid] = (_arm_of(variants, pid), reason.value)
    for pid in unrenderable:
        outcomes[pid] = (_arm_of(variants, pid), RENDER_FAILED)
    return outcomes


def _arm_of(variants: VariantPlan, prospect_id: uuid.UUID) -> str | None:
    arm = variants.choose(prospect_id).arm
    return arm.name if arm is not None else None


def _render_failed(campaign: Campaign, prospect_id: uuid.UUID, now: datetime) -> dict[str, Any]:
    return {
        "at": now,
        "kind": EventKind.SKIPPED.value,
        "campaign_id": campaign.id,
        "pm_id": campaign.pm_id,
        "prospect_id": prospect_id,
        "details": {"reason": RENDER_FAILED},
    }
