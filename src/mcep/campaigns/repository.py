"""Queries over profiles, templates and campaigns (always through ``scope_to_owner``), and the
bulk reads a launch makes over its audience: a few statements per launch, never one per row."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from mcep.auth.principal import Principal, scope_to_owner
from mcep.campaigns.models import (
    Campaign,
    CampaignStatus,
    CampaignVariant,
    EngagementProfile,
    Template,
)
from mcep.contacts import repository as contacts_repository
from mcep.contacts.models import (
    Channel,
    ConsentStatus,
    Prospect,
    ProspectConsent,
    ProspectHandle,
)
from mcep.errors import NotFound

Owned = TypeVar("Owned", EngagementProfile, Template, Campaign)
CHUNK = 5000  # ids per IN list: well under every backend's bind-parameter limit


def chunks(ids: Sequence[uuid.UUID], size: int = CHUNK) -> list[Sequence[uuid.UUID]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


async def get_owned(
    session: AsyncSession,
    principal: Principal,
    model: type[Owned],
    object_id: uuid.UUID,
    *,
    for_update: bool = False,
) -> Owned:
    """The object if the caller may see it; otherwise 404, whether or not it exists."""
    stmt = scope_to_owner(select(model), model.pm_id, principal).where(model.id == object_id)
    found = await session.scalar(stmt.with_for_update() if for_update else stmt)
    if found is None:
        raise NotFound(f"no such {model.__name__.lower().replace('engagement', '')}")
    return found


async def list_owned(
    session: AsyncSession,
    principal: Principal,
    model: type[Owned],
    *,
    limit: int,
    offset: int,
    where: Sequence[Any] = (),
) -> tuple[list[Owned], int]:
    """One page of the caller's objects, newest first, with the total."""
    stmt = scope_to_owner(select(model), model.pm_id, principal).where(*where)
    total = await session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = await session.scalars(
        stmt.order_by(model.created_at.desc(), model.id).limit(limit).offset(offset)
    )
    return list(rows.all()), total


async def template_in_use(session: AsyncSession, template_id: uuid.UUID) -> bool:
    stmt = select(CampaignVariant.campaign_id).where(CampaignVariant.template_id == template_id)
    return (await session.scalar(stmt.limit(1))) is not None


async def profile_in_use(session: AsyncSession, profile_id: uuid.UUID) -> bool:
    stmt = select(Campaign.id).where(Campaign.profile_id == profile_id)
    return (await session.scalar(stmt.limit(1))) is not None


async def templates_by_id(
    session: AsyncSession, principal: Principal, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Template]:
    stmt = scope_to_owner(select(Template), Template.pm_id, principal).where(Template.id.in_(ids))
    return {t.id: t for t in (await session.scalars(stmt)).all()}


async def campaign_status(session: AsyncSession, campaign_id: uuid.UUID) -> CampaignStatus | None:
    return await session.scalar(select(Campaign.status).where(Campaign.id == campaign_id))


# --- the launch's bulk reads -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecipientRow:
    """The columns of a prospect a launch needs (personal fields still sealed)."""

    id: uuid.UUID
    wrapped_key: bytes | None
    name_enc: bytes | None
    timezone: str
    attributes: dict[str, Any]
    opted_out: bool
    erased: bool


async def filtered_ids(
    session: AsyncSession, principal: Principal, f: contacts_repository.ProspectFilter
) -> list[uuid.UUID]:
    """Ids of the caller's prospects that match ``f`` (one statement)."""
    stmt = contacts_repository.apply_filter(  # the prospects API's own filter semantics
        scope_to_owner(select(Prospect.id), Prospect.pm_id, principal), f
    )
    return list((await session.scalars(stmt.order_by(Prospect.id))).all())


async def recipient_rows(
    session: AsyncSession, principal: Principal, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, RecipientRow]:
    """The caller's prospects among ``ids``; ids it may not see are simply absent."""
    found: dict[uuid.UUID, RecipientRow] = {}
    columns = select(
        Prospect.id,
        Prospect.wrapped_key,
        Prospect.name_enc,
        Prospect.timezone,
        Prospect.attributes,
        Prospect.opted_out,
        Prospect.erased_at,
    )
    for chunk in chunks(ids):
        stmt = scope_to_owner(columns, Prospect.pm_id, principal).where(Prospect.id.in_(chunk))
        for row in (await session.execute(stmt)).all():
            found[row.id] = RecipientRow(
                id=row.id,
                wrapped_key=row.wrapped_key,
                name_enc=row.name_enc,
                timezone=row.timezone,
                attributes=row.attributes,
                opted_out=row.opted_out,
                erased=row.erased_at is not None,
            )
    return found


async def granted_channels(
    session: AsyncSession, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, frozenset[Channel]]:
    """The channels each prospect currently consents to."""
    pairs: dict[uuid.UUID, set[Channel]] = {}
    for chunk in chunks(ids):
        stmt = select(ProspectConsent.prospect_id, ProspectConsent.channel).where(
            ProspectConsent.prospect_id.in_(chunk),
            ProspectConsent.status == ConsentStatus.GRANTED,
        )
        for pid, channel in await session.execute(stmt):
            pairs.setdefault(pid, set()).add(channel)
    return {pid: frozenset(channels) for pid, channels in pairs.items()}


async def handle_channels(
    session: AsyncSession, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, frozenset[Channel]]:
    """The channels each prospect has a handle on."""
    pairs: dict[uuid.UUID, set[Channel]] = {}
    for chunk in chunks(ids):
        stmt = select(ProspectHandle.prospect_id, ProspectHandle.channel).where(
            ProspectHandle.prospect_id.in_(chunk)
        )
        for pid, channel in await session.execute(stmt):
            pairs.setdefault(pid, set()).add(channel)
    return {pid: frozenset(channels) for pid, channels in pairs.items()}


async def profile_for(session: AsyncSession, campaign: Campaign) -> EngagementProfile | None:
    if campaign.profile_id is None:
        return None
    return await session.get(EngagementProfile, campaign.profile_id)
