"""Profile, template and campaign rules: validation, ownership, status changes; all audited.

Flushes; never commits: the request that calls it owns the transaction. The launch itself is
in :mod:`mcep.campaigns.launch`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from mcep.audit import service as audit
from mcep.auth.principal import Permission, Principal
from mcep.campaigns import repository
from mcep.campaigns.models import (
    Campaign,
    CampaignStatus,
    CampaignVariant,
    EngagementProfile,
    Template,
)
from mcep.campaigns.rendering import parse_checked
from mcep.campaigns.rules import rules_of
from mcep.campaigns.schemas import (
    CampaignCreate,
    ProfileCreate,
    ProfileUpdate,
    TemplateCreate,
    TemplateOut,
    TemplateUpdate,
    WhatsAppTemplateSpec,
)
from mcep.dispatch import repository as dispatch_repository
from mcep.dispatch.windows import NoSendWindow
from mcep.errors import Conflict, NotFound, ValidationFailed


async def _audit(
    session: AsyncSession, principal: Principal, action: str, obj: Any, **details: object
) -> None:
    await audit.append(
        session,
        actor=principal.actor,
        action=action,
        object_type=action.partition(".")[0],
        object_id=str(obj.id),
        details={"pm_id": str(obj.pm_id), **details},
    )


# --- profiles ------------------------------------------------------------------------------


def check_profile(profile: EngagementProfile) -> None:
    """Rules that span fields; each failure names the field to fix."""
    if (profile.quiet_start is None) != (profile.quiet_end is None):
        missing = "quiet_end" if profile.quiet_end is None else "quiet_start"
        raise ValidationFailed.of(missing, "quiet hours need both a start and an end")
    if profile.cap_per_week < profile.cap_per_day:
        raise ValidationFailed.of("cap_per_week", "must be at least cap_per_day")
    try:
        rules_of(profile)
    except NoSendWindow as exc:
        raise ValidationFailed.of("quiet_start", str(exc)) from exc


async def create_profile(
    session: AsyncSession, principal: Principal, data: ProfileCreate
) -> EngagementProfile:
    principal.require(Permission.OWNED_WRITE)
    values = data.model_dump()
    values["channel_order"] = [c.value for c in data.channel_order]
    profile = EngagementProfile(pm_id=principal.owner_pm_id(), **values)
    check_profile(profile)
    session.add(profile)
    await session.flush()
    await _audit(session, principal, "profile.created", profile, name=profile.name)
    return profile


async def update_profile(
    session: AsyncSession, principal: Principal, profile_id: uuid.UUID, data: ProfileUpdate
) -> EngagementProfile:
    """Change some fields; the result must still pass :func:`check_profile`."""
    principal.require(Permission.OWNED_WRITE)
    profile = await repository.get_owned(
        session, principal, EngagementProfile, profile_id, for_update=True
    )
    for name in data.model_fields_set:
        value = getattr(data, name)
        nullable = name in ("quiet_start", "quiet_end")
        if value is None and not nullable:
            raise ValidationFailed.of(name, "may not be null")
        setattr(profile, name, [str(v) for v in value] if name == "channel_order" else value)
    check_profile(profile)
    await session.flush()
    await _audit(
        session, principal, "profile.updated", profile, fields=sorted(data.model_fields_set)
    )
    return profile


async def delete_profile(
    session: AsyncSession, principal: Principal, profile_id: uuid.UUID
) -> None:
    principal.require(Permission.OWNED_WRITE)
    profile = await repository.get_owned(
        session, principal, EngagementProfile, profile_id, for_update=True
    )
    if await repository.profile_in_use(session, profile.id):
        raise Conflict("campaigns use this profile; it can't be deleted")
    await session.delete(profile)
    await session.flush()
    await _audit(session, principal, "profile.deleted", profile, name=profile.name)


# --- templates -----------------------------------------------------------------------------


def _check_template(body: str, whatsapp: WhatsAppTemplateSpec | None) -> None:
    parse_checked(body, field="body")
    for i, parameter in enumerate(whatsapp.parameters if whatsapp else []):
        parse_checked(parameter, field=f"whatsapp.parameters.{i}")


def _set_whatsapp(template: Template, spec: WhatsAppTemplateSpec | None) -> None:
    template.wa_template_name = spec.name if spec else None
    template.wa_language = spec.language if spec else None
    template.wa_parameters = list(spec.parameters) if spec else []


def template_out(template: Template) -> TemplateOut:
    """The API view of a template (its WhatsApp columns as one nested object)."""
    whatsapp = None
    if template.wa_template_name and template.wa_language:
        whatsapp = WhatsAppTemplateSpec(
            name=template.wa_template_name,
            language=template.wa_language,
            parameters=list(template.wa_parameters),
        )
    return TemplateOut(
        id=template.id,
        pm_id=template.pm_id,
        name=template.name,
        body=template.body,
        whatsapp=whatsapp,
        created_at=template.created_at,
        updated_at=template.updated_at,
    )


async def create_template(
    session: AsyncSession, principal: Principal, data: TemplateCreate
) -> Template:
    principal.require(Permission.OWNED_WRITE)
    _check_template(data.body, data.whatsapp)
    template = Template(pm_id=principal.owner_pm_id(), name=data.name, body=data.body)
    _set_whatsapp(template, data.whatsapp)
    session.add(template)
    await session.flush()
    await _audit(session, principal, "template.created", template, name=template.name)
    return template


async def update_template(
    session: AsyncSession, principal: Principal, template_id: uuid.UUID, data: TemplateUpdate
) -> Template:
    """Changes apply to later launches; launched messages keep what was rendered."""
    principal.require(Permission.OWNED_WRITE)
    template = await repository.get_owned(
        session, principal, Template, template_id, for_update=True
    )
    if "name" in data.model_fields_set and data.name is None:
        raise ValidationFailed.of("name", "may not be null")
    if "body" in data.model_fields_set and data.body is None:
        raise ValidationFailed.of("body", "may not be null")
    whatsapp = (
        data.whatsapp if "whatsapp" in data.model_fields_set else template_out(template).whatsapp
    )
    _check_template(data.body or template.body, whatsapp)
    template.name = data.name or template.name
    template.body = data.body or template.body
    _set_whatsapp(template, whatsapp)
    await session.flush()
    await _audit(
        session, principal, "template.updated", template, fields=sorted(data.model_fields_set)
    )
    return template


async def delete_template(
    session: AsyncSession, principal: Principal, template_id: uuid.UUID
) -> None:
    principal.require(Permission.OWNED_WRITE)
    template = await repository.get_owned(
        session, principal, Template, template_id, for_update=True
    )
    if await repository.template_in_use(session, template.id):
        raise Conflict("campaigns use this template; it can't be deleted")
    await session.delete(template)
    await session.flush()
    await _audit(session, principal, "template.deleted", template, name=template.name)


# --- campaigns -----------------------------------------------------------------------------


async def _variants(
    session: AsyncSession, principal: Principal, data: CampaignCreate
) -> list[CampaignVariant]:
    if (data.template_id is None) == (data.variants is None):
        raise ValidationFailed.of("template_id", "give either template_id or variants (not both)")
    if data.template_id is not None:
        if not await repository.templates_by_id(session, principal, [data.template_id]):
            raise ValidationFailed.of("template_id", "no such template")
        return [CampaignVariant(name="default", template_id=data.template_id, weight=1.0)]
    variants = data.variants or []
    if len({v.name for v in variants}) != len(variants):
        raise ValidationFailed.of("variants", "variant names must be unique")
    if not any(v.weight > 0 for v in variants):
        raise ValidationFailed.of("variants", "at least one variant needs a positive weight")
    found = await repository.templates_by_id(session, principal, [v.template_id for v in variants])
    for i, v in enumerate(variants):
        if v.template_id not in found:
            raise ValidationFailed.of(f"variants.{i}.template_id", "no such template")
    return [
        CampaignVariant(name=v.name, template_id=v.template_id, weight=v.weight) for v in variants
    ]


def _audience(data: CampaignCreate) -> dict[str, Any]:
    audience = data.audience
    if (audience.prospect_ids is None) == (audience.filter is None):
        raise ValidationFailed.of("audience", "give either prospect_ids or filter (not both)")
    if audience.prospect_ids is not None:
        return {"prospect_ids": [str(p) for p in dict.fromkeys(audience.prospect_ids)]}
    assert audience.filter is not None
    return {"filter": audience.filter.model_dump(mode="json", exclude_defaults=True)}


async def create_campaign(
    session: AsyncSession, principal: Principal, data: CampaignCreate
) -> Campaign:
    """A draft campaign; its profile and templates must be the caller's own (else 422)."""
    principal.require(Permission.OWNED_WRITE)
    pm_id = principal.owner_pm_id()
    if data.profile_id is not None:
        try:
            await repository.get_owned(session, principal, EngagementProfile, data.profile_id)
        except NotFound as exc:
            raise ValidationFailed.of("profile_id", "no such profile") from exc
    campaign = Campaign(
        pm_id=pm_id,
        name=data.name,
        profile_id=data.profile_id,
        audience=_audience(data),
        start_at=data.start_at,
        status=CampaignStatus.DRAFT,
        variants=await _variants(session, principal, data),
    )
    session.add(campaign)
    await session.flush()
    await _audit(session, principal, "campaign.created", campaign, name=campaign.name)
    return campaign


_DONE = {"pause": "paused", "resume": "resumed", "cancel": "cancelled"}
_NEXT_STATUS = {
    "pause": ({CampaignStatus.SCHEDULED, CampaignStatus.RUNNING}, CampaignStatus.PAUSED),
    "resume": ({CampaignStatus.PAUSED}, CampaignStatus.RUNNING),
    "cancel": (
        {
            CampaignStatus.DRAFT,
            CampaignStatus.SCHEDULED,
            CampaignStatus.RUNNING,
            CampaignStatus.PAUSED,
        },
        CampaignStatus.CANCELLED,
    ),
}


async def change_status(
    session: AsyncSession,
    principal: Principal,
    campaign_id: uuid.UUID,
    action: str,
    *,
    now: datetime,
) -> Campaign:
    """Pause, resume or cancel. Paused campaigns' messages stay queued but are not claimed;
    cancelling also cancels every message not yet in flight."""
    principal.require(Permission.OWNED_WRITE)
    allowed, target = _NEXT_STATUS[action]
    campaign = await repository.get_owned(
        session, principal, Campaign, campaign_id, for_update=True
    )
    if campaign.status not in allowed:
        raise Conflict(f"a {campaign.status} campaign can't {action}")
    if target is CampaignStatus.RUNNING and campaign.start_at and campaign.start_at > now:
        target = CampaignStatus.SCHEDULED
    previous, campaign.status = campaign.status, target
    cancelled = 0
    if target is CampaignStatus.CANCELLED:
        cancelled = await dispatch_repository.cancel_waiting(
            session, now=now, campaign_id=campaign.id, reason="campaign cancelled"
        )
    await session.flush()
    details: dict[str, object] = {"from": previous.value, "to": target.value}
    if target is CampaignStatus.CANCELLED:
        details["messages_cancelled"] = cancelled
    await _audit(session, principal, f"campaign.{_DONE[action]}", campaign, **details)
    return campaign
