"""Launching a campaign: from an audience to queued Message rows, in a handful of statements.

1. Read everything in bulk: the audience, its consents, handles, recent message counts, the
   active devices with their load, and each prospect's last device (stickiness).
2. Decide per recipient with the pure functions: eligibility (skip reasons), variant (or,
   under an experiment, the hold-out or the remainder held for the winner), channel, device,
   and the first instant inside the recipient's send window.
3. Render and seal each body under the recipient's own data key. A missing template variable
   fails the whole launch with a 422 naming it: nothing half-launched, no blank in a message.
4. Write: one INSERT for all messages (per 1,000 rows), one for their events, the campaign's
   status and result, and one audit entry carrying the Merkle root of the message ids.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from mcep.audit import service as audit
from mcep.audit.chain import merkle_root
from mcep.auth.principal import Permission, Principal
from mcep.campaigns import repository
from mcep.campaigns.eligibility import (
    RecipientFacts,
    Skipped,
    SkipReason,
    check_recipient,
    choose_channel,
)
from mcep.campaigns.models import Campaign, CampaignStatus, Template
from mcep.campaigns.rendering import (
    CompiledTemplate,
    RenderError,
    compile_template,
    recipient_context,
    render,
)
from mcep.campaigns.rules import ProfileRules, rules_of
from mcep.campaigns.schemas import LaunchResult, SkippedRecipient
from mcep.campaigns.variants import ArmSkip, VariantPlan
from mcep.channels.base import Platform
from mcep.contacts import repository as contacts_repository
from mcep.contacts.crypto import Keyring
from mcep.contacts.models import Channel
from mcep.dispatch import repository as dispatch_repository
from mcep.dispatch.caps import cap_windows
from mcep.dispatch.content import body_digest, seal_content
from mcep.dispatch.models import EventKind, MessageState
from mcep.dispatch.windows import next_allowed
from mcep.errors import Conflict, ValidationFailed
from mcep.experiments import launching as experiments
from mcep.fleet import repository as fleet_repository
from mcep.fleet.allocator import DeviceAllocator


@dataclass(frozen=True, slots=True)
class Planned:
    """One recipient's decided message, before rendering."""

    prospect_id: uuid.UUID
    channel: Channel
    device_id: uuid.UUID
    variant: str
    next_attempt_at: datetime


@dataclass(frozen=True, slots=True)
class Plan:
    planned: list[Planned]
    skipped: list[tuple[uuid.UUID, SkipReason | ArmSkip]]


# --- pure planning ---------------------------------------------------------------------------


def plan_recipient(
    facts: RecipientFacts,
    *,
    timezone: str,
    rules: ProfileRules,
    allocator: DeviceAllocator,
    variants: VariantPlan,
    start: datetime,
) -> Planned | Skipped | ArmSkip:
    """Every decision for one recipient; only the allocator's in-memory load changes.

    Eligibility comes before the arm, so who is eligible never depends on the arm.
    """
    decision = check_recipient(facts, channel_order=rules.channel_order, caps=rules.caps)
    if isinstance(decision, Skipped):
        return decision
    pid = facts.prospect_id
    choice = variants.choose(pid)
    if choice.arm is None:
        return choice.skip
    channel = choose_channel(
        choice.arm.channels(decision.channels),
        has_sender=lambda c: allocator.has_capacity(Platform(c.value), prospect_id=pid),
    )
    device_id = (
        None if channel is None else allocator.allocate(Platform(channel.value), prospect_id=pid)
    )
    if channel is None or device_id is None:
        return Skipped(SkipReason.NO_DEVICE)
    return Planned(
        prospect_id=pid,
        channel=channel,
        device_id=device_id,
        variant=choice.arm.name,
        next_attempt_at=next_allowed(
            start + choice.arm.send_offset, zone=timezone, window=rules.window
        ),
    )


def plan_launch(
    requested: Sequence[uuid.UUID],
    facts: Mapping[uuid.UUID, RecipientFacts],
    timezones: Mapping[uuid.UUID, str],
    *,
    rules: ProfileRules,
    allocator: DeviceAllocator,
    variants: VariantPlan,
    start: datetime,
) -> Plan:
    """Each requested prospect ends up either planned or skipped with a reason."""
    plan = Plan(planned=[], skipped=[])
    for pid in requested:
        if pid not in facts:
            plan.skipped.append((pid, SkipReason.NOT_FOUND))
            continue
        outcome = plan_recipient(
            facts[pid],
            timezone=timezones[pid],
            rules=rules,
            allocator=allocator,
            variants=variants,
            start=start,
        )
        if isinstance(outcome, ArmSkip):
            plan.skipped.append((pid, outcome))
        elif isinstance(outcome, Skipped):
            plan.skipped.append((pid, outcome.reason))
        else:
            plan.planned.append(outcome)
    return plan


# --- bulk reads ------------------------------------------------------------------------------


async def requested_ids(
    session: AsyncSession, principal: Principal, campaign: Campaign
) -> list[uuid.UUID]:
    """The audience as asked for: the explicit ids, or the filter evaluated now."""
    audience = campaign.audience
    if "prospect_ids" in audience:
        return [uuid.UUID(p) for p in audience["prospect_ids"]]
    f = audience.get("filter", {})
    prospect_filter = contacts_repository.ProspectFilter(
        tags=list(f.get("tags", [])),
        attributes=dict(f.get("attributes", {})),
        channel=Channel(f["channel"]) if f.get("channel") else None,
        consent=Channel(f["consent"]) if f.get("consent") else None,
        score_min=f.get("score_min"),
        score_max=f.get("score_max"),
    )
    return await repository.filtered_ids(session, principal, prospect_filter)


async def gather_facts(
    session: AsyncSession, principal: Principal, requested: Sequence[uuid.UUID], *, now: datetime
) -> tuple[dict[uuid.UUID, repository.RecipientRow], dict[uuid.UUID, RecipientFacts]]:
    """The audience's rows and, per prospect, what eligibility needs (four reads)."""
    rows = await repository.recipient_rows(session, principal, requested)
    ids = list(rows)
    consents = await repository.granted_channels(session, ids)
    handles = await repository.handle_channels(session, ids)
    counts = await dispatch_repository.recent_counts(session, ids, windows=cap_windows(now))
    facts = {
        pid: RecipientFacts(
            prospect_id=pid,
            opted_out=row.opted_out,
            erased=row.erased or row.wrapped_key is None,
            consented=consents.get(pid, frozenset()),
            handles=handles.get(pid, frozenset()),
            last_day=counts.get(pid, (0, 0))[0],
            last_week=counts.get(pid, (0, 0))[1],
        )
        for pid, row in rows.items()
    }
    return rows, facts


async def build_allocator(
    session: AsyncSession, *, pm_id: uuid.UUID, prospect_ids: Sequence[uuid.UUID], now: datetime
) -> DeviceAllocator:
    slots = await fleet_repository.device_slots(session, since=now - timedelta(days=1))
    sticky = await fleet_repository.last_devices(session, pm_id=pm_id, prospect_ids=prospect_ids)
    return DeviceAllocator(slots, sticky=sticky)


async def compiled_variants(
    session: AsyncSession, principal: Principal, campaign: Campaign
) -> dict[str, tuple[Template, CompiledTemplate]]:
    """Each variant's template, compiled once for the whole launch."""
    templates = await repository.templates_by_id(
        session, principal, [v.template_id for v in campaign.variants]
    )
    compiled: dict[str, tuple[Template, CompiledTemplate]] = {}
    for v in campaign.variants:
        t = templates[v.template_id]
        compiled[v.name] = (
            t,
            compile_template(
                body=t.body,
                wa_name=t.wa_template_name,
                wa_language=t.wa_language,
                wa_parameters=t.wa_parameters,
            ),
        )
    return compiled


# --- rendering and rows ----------------------------------------------------------------------


def message_row(
    item: Planned,
    row: repository.RecipientRow,
    template: tuple[Template, CompiledTemplate],
    *,
    campaign: Campaign,
    keyring: Keyring,
    now: datetime,
) -> dict[str, Any]:
    """The outbox row for one planned recipient, its body rendered and sealed under their key."""
    assert row.wrapped_key is not None and row.name_enc is not None
    key = keyring.unwrap(row.wrapped_key)
    context = recipient_context(
        name=key.open("name", row.name_enc),
        timezone=row.timezone,
        campaign=campaign.name,
        attributes=row.attributes,
    )
    try:
        content = render(template[1], context)
    except RenderError as exc:
        field = f"variants.{item.variant}.{exc.field}"
        raise ValidationFailed.of(
            field, f"{exc} (template {template[0].name!r}, prospect {item.prospect_id})"
        ) from exc
    message_id = uuid.uuid4()
    return {
        "id": message_id,
        "campaign_id": campaign.id,
        "pm_id": campaign.pm_id,
        "prospect_id": item.prospect_id,
        "variant": item.variant,
        "channel": item.channel,
        "device_id": item.device_id,
        "content_enc": seal_content(content, key=key, message_id=message_id),
        "body_sha256": body_digest(content.body),
        "state": MessageState.QUEUED,
        "attempts": 0,
        "failures": 0,
        "next_attempt_at": item.next_attempt_at,
        "created_at": now,
        "updated_at": now,
    }


def event_rows(
    messages: Sequence[dict[str, Any]],
    skipped: Sequence[tuple[uuid.UUID, SkipReason | ArmSkip]],
    *,
    campaign: Campaign,
    now: datetime,
) -> list[dict[str, Any]]:
    """A ``queued`` event per message and a ``skipped`` event per known skipped prospect
    (the remainder held for an experiment's winner is not skipped: it is queued later)."""
    keys = ("campaign_id", "variant", "channel", "device_id", "prospect_id", "pm_id")
    queued = [
        {"at": now, "kind": EventKind.QUEUED.value, "message_id": m["id"], "details": {}}
        | {k: m[k] for k in keys}
        for m in messages
    ]
    skips = [
        {
            "at": now,
            "kind": EventKind.SKIPPED.value,
            "campaign_id": campaign.id,
            "pm_id": campaign.pm_id,
            "prospect_id": pid,
            "details": {"reason": reason.value},
        }
        for pid, reason in skipped
        # not this PM's prospect: nothing to log about
        if reason is not SkipReason.NOT_FOUND and reason is not ArmSkip.HELD
    ]
    return queued + skips


def launch_result(
    requested: int, messages: Sequence[dict[str, Any]], plan: Plan, *, root: str
) -> LaunchResult:
    """The counts, reasons and Merkle root a launch reports and keeps."""
    times = [m["next_attempt_at"] for m in messages]
    return LaunchResult(
        audience=requested,
        queued=len(messages),
        skipped=len(plan.skipped),
        skip_reasons=dict(Counter(reason.value for _, reason in plan.skipped)),
        skipped_recipients=[
            SkippedRecipient(prospect_id=pid, reason=reason.value) for pid, reason in plan.skipped
        ],
        by_channel=dict(Counter(m["channel"].value for m in messages)),
        by_variant=dict(Counter(m["variant"] for m in messages)),
        first_attempt_at=min(times, default=None),
        last_attempt_at=max(times, default=None),
        merkle_root=root,
    )


def _status_after(campaign: Campaign, queued: int, now: datetime | None) -> CampaignStatus:
    if queued == 0:
        return CampaignStatus.COMPLETED
    if campaign.start_at is not None and now is not None and campaign.start_at > now:
        return CampaignStatus.SCHEDULED
    return CampaignStatus.RUNNING


# --- the launch ------------------------------------------------------------------------------


async def plan_for(
    session: AsyncSession,
    principal: Principal,
    campaign: Campaign,
    *,
    now: datetime,
    variants: VariantPlan | None = None,
) -> tuple[list[uuid.UUID], dict[uuid.UUID, repository.RecipientRow], Plan]:
    """Read the audience and everything about it in bulk, then decide per recipient."""
    rules = rules_of(await repository.profile_for(session, campaign))
    requested = await requested_ids(session, principal, campaign)
    rows, facts = await gather_facts(session, principal, requested, now=now)
    allocator = await build_allocator(
        session, pm_id=campaign.pm_id, prospect_ids=list(rows), now=now
    )
    plan = plan_launch(
        requested,
        facts,
        {pid: row.timezone for pid, row in rows.items()},
        rules=rules,
        allocator=allocator,
        variants=variants or await experiments.variant_plan(session, campaign),
        start=max(now, campaign.start_at or now),
    )
    return requested, rows, plan


async def _record(
    session: AsyncSession, principal: Principal, campaign: Campaign, result: LaunchResult
) -> None:
    """The campaign's new status and result, and one audit entry vouching for every message."""
    campaign.status = _status_after(campaign, result.queued, campaign.launched_at)
    campaign.launch_result = result.model_dump(mode="json")
    await session.flush()
    await audit.append(
        session,
        actor=principal.actor,
        action="campaign.launched",
        object_type="campaign",
        object_id=str(campaign.id),
        details={
            "pm_id": str(campaign.pm_id),
            "queued": result.queued,
            "skipped": result.skipped,
            "skip_reasons": result.skip_reasons,
            "messages_merkle_root": result.merkle_root,
        },
    )


async def launch(
    session: AsyncSession,
    principal: Principal,
    campaign_id: uuid.UUID,
    *,
    keyring: Keyring,
    now: datetime,
) -> Campaign:
    """Queue the campaign's messages; skipped recipients are reported with their reasons."""
    principal.require(Permission.OWNED_WRITE)
    campaign = await repository.get_owned(
        session, principal, Campaign, campaign_id, for_update=True
    )
    if campaign.status is not CampaignStatus.DRAFT:
        raise Conflict(f"only a draft campaign can be launched; this one is {campaign.status}")
    templates = await compiled_variants(session, principal, campaign)
    variants = await experiments.variant_plan(session, campaign)
    requested, rows, plan = await plan_for(session, principal, campaign, now=now, variants=variants)
    messages = [
        message_row(
            p,
            rows[p.prospect_id],
            templates[p.variant],
            campaign=campaign,
            keyring=keyring,
            now=now,
        )
        for p in plan.planned
    ]
    held = [pid for pid, reason in plan.skipped if reason is ArmSkip.HELD]
    experiments.check_renders(held, rows, templates, campaign=campaign, keyring=keyring)
    await dispatch_repository.insert_messages(session, messages)
    await dispatch_repository.insert_events(
        session, event_rows(messages, plan.skipped, campaign=campaign, now=now)
    )
    root = merkle_root(sorted(m["id"].bytes for m in messages))
    campaign.launched_at = now
    await _record(
        session, principal, campaign, launch_result(len(requested), messages, plan, root=root)
    )
    await experiments.record_launch(
        session,
        variants,
        queued=[(p.prospect_id, p.variant) for p in plan.planned],
        skipped=[(pid, reason.value) for pid, reason in plan.skipped],
        actor=principal.actor,
        now=now,
    )
    return campaign
