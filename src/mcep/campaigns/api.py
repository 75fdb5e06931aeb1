"""Routes for engagement profiles, templates and campaigns (launch, pause, resume, cancel)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, status

from mcep.api.deps import CurrentPrincipal, RuntimeDep, Session
from mcep.api.schemas import Page, PageParams
from mcep.auth.principal import Permission
from mcep.campaigns import launch as launching
from mcep.campaigns import repository, service
from mcep.campaigns.models import Campaign, CampaignStatus, EngagementProfile, Template
from mcep.campaigns.schemas import (
    CampaignCreate,
    CampaignOut,
    LaunchResult,
    ProfileCreate,
    ProfileOut,
    ProfileUpdate,
    TemplateCreate,
    TemplateOut,
    TemplateUpdate,
    VariantOut,
)

profiles = APIRouter(prefix="/api/v1/profiles", tags=["profiles"])
templates = APIRouter(prefix="/api/v1/templates", tags=["templates"])
campaigns = APIRouter(prefix="/api/v1/campaigns", tags=["campaigns"])
Paging = Annotated[PageParams, Depends()]


def _profile_out(profile: EngagementProfile) -> ProfileOut:
    return ProfileOut.model_validate(profile, from_attributes=True)


def campaign_out(campaign: Campaign) -> CampaignOut:
    """The API view of a campaign, with its variants and launch result."""
    return CampaignOut(
        id=campaign.id,
        pm_id=campaign.pm_id,
        name=campaign.name,
        profile_id=campaign.profile_id,
        variants=[VariantOut.model_validate(v, from_attributes=True) for v in campaign.variants],
        audience=campaign.audience,
        start_at=campaign.start_at,
        status=campaign.status,
        launched_at=campaign.launched_at,
        launch_result=LaunchResult.model_validate(campaign.launch_result)
        if campaign.launch_result
        else None,
        created_at=campaign.created_at,
        updated_at=campaign.updated_at,
    )


# --- profiles ------------------------------------------------------------------------------


@profiles.get("", response_model=Page[ProfileOut])
async def list_profiles(
    principal: CurrentPrincipal, session: Session, page: Paging
) -> Page[ProfileOut]:
    principal.require(Permission.OWNED_READ)
    rows, total = await repository.list_owned(
        session, principal, EngagementProfile, limit=page.limit, offset=page.offset
    )
    return Page(
        items=[_profile_out(p) for p in rows], total=total, limit=page.limit, offset=page.offset
    )


@profiles.post("", response_model=ProfileOut, status_code=status.HTTP_201_CREATED)
async def create_profile(
    body: ProfileCreate, principal: CurrentPrincipal, session: Session
) -> ProfileOut:
    return _profile_out(await service.create_profile(session, principal, body))


@profiles.get("/{profile_id}", response_model=ProfileOut)
async def get_profile(
    profile_id: uuid.UUID, principal: CurrentPrincipal, session: Session
) -> ProfileOut:
    principal.require(Permission.OWNED_READ)
    return _profile_out(
        await repository.get_owned(session, principal, EngagementProfile, profile_id)
    )


@profiles.patch("/{profile_id}", response_model=ProfileOut)
async def update_profile(
    profile_id: uuid.UUID, body: ProfileUpdate, principal: CurrentPrincipal, session: Session
) -> ProfileOut:
    return _profile_out(await service.update_profile(session, principal, profile_id, body))


@profiles.delete("/{profile_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_profile(
    profile_id: uuid.UUID, principal: CurrentPrincipal, session: Session
) -> None:
    await service.delete_profile(session, principal, profile_id)


# --- templates -----------------------------------------------------------------------------


@templates.get("", response_model=Page[TemplateOut])
async def list_templates(
    principal: CurrentPrincipal, session: Session, page: Paging
) -> Page[TemplateOut]:
    principal.require(Permission.OWNED_READ)
    rows, total = await repository.list_owned(
        session, principal, Template, limit=page.limit, offset=page.offset
    )
    items = [service.template_out(t) for t in rows]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@templates.post("", response_model=TemplateOut, status_code=status.HTTP_201_CREATED)
async def create_template(
    body: TemplateCreate, principal: CurrentPrincipal, session: Session
) -> TemplateOut:
    return service.template_out(await service.create_template(session, principal, body))


@templates.get("/{template_id}", response_model=TemplateOut)
async def get_template(
    template_id: uuid.UUID, principal: CurrentPrincipal, session: Session
) -> TemplateOut:
    principal.require(Permission.OWNED_READ)
    return service.template_out(
        await repository.get_owned(session, principal, Template, template_id)
    )


@templates.patch("/{template_id}", response_model=TemplateOut)
async def update_template(
    template_id: uuid.UUID, body: TemplateUpdate, principal: CurrentPrincipal, session: Session
) -> TemplateOut:
    return service.template_out(
        await service.update_template(session, principal, template_id, body)
    )


@templates.delete("/{template_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_template(
    template_id: uuid.UUID, principal: CurrentPrincipal, session: Session
) -> None:
    await service.delete_template(session, principal, template_id)


# --- campaigns -----------------------------------------------------------------------------


@campaigns.get("", response_model=Page[CampaignOut])
async def list_campaigns(
    principal: CurrentPrincipal,
    session: Session,
    page: Paging,
    status: CampaignStatus | None = None,
) -> Page[CampaignOut]:
    principal.require(Permission.OWNED_READ)
    where = [] if status is None else [Campaign.status == status]
    rows, total = await repository.list_owned(
        session, principal, Campaign, limit=page.limit, offset=page.offset, where=where
    )
    return Page(
        items=[campaign_out(c) for c in rows], total=total, limit=page.limit, offset=page.offset
    )


@campaigns.post("", response_model=CampaignOut, status_code=status.HTTP_201_CREATED)
async def create_campaign(
    body: CampaignCreate, principal: CurrentPrincipal, session: Session
) -> CampaignOut:
    return campaign_out(await service.create_campaign(session, principal, body))


@campaigns.get("/{campaign_id}", response_model=CampaignOut)
async def get_campaign(
    campaign_id: uuid.UUID, principal: CurrentPrincipal, session: Session
) -> CampaignOut:
    principal.require(Permission.OWNED_READ)
    return campaign_out(await repository.get_owned(session, principal, Campaign, campaign_id))


@campaigns.post("/{campaign_id}/launch", response_model=CampaignOut)
async def launch_campaign(
    campaign_id: uuid.UUID, principal: CurrentPrincipal, session: Session, runtime: RuntimeDep
) -> CampaignOut:
    """Queue every eligible recipient; the result lists the skipped ones with their reasons."""
    campaign = await launching.launch(
        session, principal, campaign_id, keyring=runtime.keyring, now=datetime.now(UTC)
    )
    return campaign_out(campaign)


async def _change(
    session: Session, principal: CurrentPrincipal, campaign_id: uuid.UUID, action: str
) -> CampaignOut:
    campaign = await service.change_status(
        session, principal, campaign_id, action, now=datetime.now(UTC)
    )
    return campaign_out(campaign)


@campaigns.post("/{campaign_id}/pause", response_model=CampaignOut)
async def pause_campaign(
    campaign_id: uuid.UUID, principal: CurrentPrincipal, session: Session
) -> CampaignOut:
    return await _change(session, principal, campaign_id, "pause")


@campaigns.post("/{campaign_id}/resume", response_model=CampaignOut)
async def resume_campaign(
    campaign_id: uuid.UUID, principal: CurrentPrincipal, session: Session
) -> CampaignOut:
    return await _change(session, principal, campaign_id, "resume")


@campaigns.post("/{campaign_id}/cancel", response_model=CampaignOut)
async def cancel_campaign(
    campaign_id: uuid.UUID, principal: CurrentPrincipal, session: Session
) -> CampaignOut:
    """Cancel the campaign and every message of it not yet in flight."""
    return await _change(session, principal, campaign_id, "cancel")
