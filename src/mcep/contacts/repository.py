"""Queries over prospects, always scoped to the caller through ``scope_to_owner``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, String, cast, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from mcep.auth.principal import Principal, scope_to_owner
from mcep.contacts.models import (
    Channel,
    ConsentStatus,
    Prospect,
    ProspectConsent,
    ProspectHandle,
    ProspectTag,
)
from mcep.errors import NotFound


@dataclass(frozen=True, slots=True)
class ProspectFilter:
    tags: list[str] = field(default_factory=list)
    attributes: dict[str, str] = field(default_factory=dict)
    channel: Channel | None = None
    consent: Channel | None = None
    opted_out: bool | None = None
    score_min: float | None = None
    score_max: float | None = None
    include_erased: bool = False


def apply_filter(stmt: Select[Any], f: ProspectFilter) -> Select[Any]:
    """Narrow a prospects query by ``f``: the one meaning of a prospect filter (the list API and
    campaign audiences both use it)."""
    for tag in f.tags:
        stmt = stmt.where(
            exists().where(ProspectTag.prospect_id == Prospect.id, ProspectTag.tag == tag)
        )
    for key, value in f.attributes.items():
        stmt = stmt.where(cast(Prospect.attributes[key].as_string(), String) == value)
    if f.channel is not None:
        stmt = stmt.where(
            exists().where(
                ProspectHandle.prospect_id == Prospect.id, ProspectHandle.channel == f.channel
            )
        )
    if f.consent is not None:
        stmt = stmt.where(
            exists().where(
                ProspectConsent.prospect_id == Prospect.id,
                ProspectConsent.channel == f.consent,
                ProspectConsent.status == ConsentStatus.GRANTED,
            )
        )
    if f.opted_out is not None:
        stmt = stmt.where(Prospect.opted_out.is_(f.opted_out))
    if f.score_min is not None:
        stmt = stmt.where(Prospect.score >= f.score_min)
    if f.score_max is not None:
        stmt = stmt.where(Prospect.score <= f.score_max)
    if not f.include_erased:
        stmt = stmt.where(Prospect.erased_at.is_(None))
    return stmt


async def list_prospects(
    session: AsyncSession, principal: Principal, f: ProspectFilter, *, limit: int, offset: int
) -> tuple[list[Prospect], int]:
    base = apply_filter(scope_to_owner(select(Prospect), Prospect.pm_id, principal), f)
    total = await session.scalar(select(func.count()).select_from(base.subquery())) or 0
    rows = await session.scalars(
        base.order_by(Prospect.created_at.desc(), Prospect.id).limit(limit).offset(offset)
    )
    return list(rows.all()), total


async def get_prospect(
    session: AsyncSession, principal: Principal, prospect_id: uuid.UUID, *, for_update: bool = False
) -> Prospect:
    """The prospect if the caller may see it; otherwise 404, whether or not it exists."""
    stmt = scope_to_owner(select(Prospect), Prospect.pm_id, principal).where(
        Prospect.id == prospect_id
    )
    if for_update:
        stmt = stmt.with_for_update()
    prospect = await session.scalar(stmt)
    if prospect is None:
        raise NotFound("no such prospect")
    return prospect


async def phone_taken(
    session: AsyncSession, pm_id: uuid.UUID, phone_hash: str, *, excluding: uuid.UUID | None = None
) -> bool:
    stmt = select(Prospect.id).where(
        Prospect.pm_id == pm_id, Prospect.phone_hash == phone_hash, Prospect.erased_at.is_(None)
    )
    if excluding is not None:
        stmt = stmt.where(Prospect.id != excluding)
    return (await session.scalar(stmt.limit(1))) is not None
