"""Prospect routes: CRUD with filters, consent, opt-out, erasure."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from mcep.api.deps import CurrentPrincipal, RuntimeDep, Session
from mcep.api.schemas import Page, PageParams
from mcep.auth.principal import Permission
from mcep.contacts import repository, service
from mcep.contacts.models import Channel
from mcep.contacts.schemas import ConsentIn, OptOutIn, ProspectCreate, ProspectOut, ProspectUpdate
from mcep.errors import ValidationFailed

router = APIRouter(prefix="/api/v1/prospects", tags=["prospects"])


def _attribute_filters(values: list[str]) -> dict[str, str]:
    parsed: dict[str, str] = {}
    for value in values:
        key, sep, wanted = value.partition(":")
        if not sep or not key.replace("_", "").isalnum():
            raise ValidationFailed.of(
                "attr", "use attr=<key>:<value> with a key of letters, digits, _"
            )
        parsed[key] = wanted
    return parsed


def prospect_filter(
    tag: Annotated[list[str], Query()] = [],  # noqa: B006 - FastAPI reads the default once
    attr: Annotated[list[str], Query(description="key:value, repeatable")] = [],  # noqa: B006
    channel: Channel | None = None,
    consent: Channel | None = None,
    opted_out: bool | None = None,
    score_min: Annotated[float | None, Query(ge=0, le=100)] = None,
    score_max: Annotated[float | None, Query(ge=0, le=100)] = None,
) -> repository.ProspectFilter:
    return repository.ProspectFilter(
        tags=tag,
        attributes=_attribute_filters(attr),
        channel=channel,
        consent=consent,
        opted_out=opted_out,
        score_min=score_min,
        score_max=score_max,
    )


@router.get("", response_model=Page[ProspectOut])
async def list_prospects(
    principal: CurrentPrincipal,
    session: Session,
    runtime: RuntimeDep,
    page: Annotated[PageParams, Depends()],
    filters: Annotated[repository.ProspectFilter, Depends(prospect_filter)],
) -> Page[ProspectOut]:
    principal.require(Permission.OWNED_READ)
    rows, total = await repository.list_prospects(
        session, principal, filters, limit=page.limit, offset=page.offset
    )
    items = [service.to_out(p, runtime.keyring) for p in rows]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.post("", response_model=ProspectOut, status_code=status.HTTP_201_CREATED)
async def create_prospect(
    body: ProspectCreate, principal: CurrentPrincipal, session: Session, runtime: RuntimeDep
) -> ProspectOut:
    prospect = await service.create(
        session,
        principal,
        body,
        keyring=runtime.keyring,
        default_region=runtime.settings.default_phone_region,
    )
    return service.to_out(prospect, runtime.keyring)


@router.get("/{prospect_id}", response_model=ProspectOut)
async def get_prospect(
    prospect_id: uuid.UUID, principal: CurrentPrincipal, session: Session, runtime: RuntimeDep
) -> ProspectOut:
    principal.require(Permission.OWNED_READ)
    prospect = await repository.get_prospect(session, principal, prospect_id)
    return service.to_out(prospect, runtime.keyring)


@router.patch("/{prospect_id}", response_model=ProspectOut)
async def update_prospect(
    prospect_id: uuid.UUID,
    body: ProspectUpdate,
    principal: CurrentPrincipal,
    session: Session,
    runtime: RuntimeDep,
) -> ProspectOut:
    prospect = await service.update(
        session,
        principal,
        prospect_id,
        body,
        keyring=runtime.keyring,
        default_region=runtime.settings.default_phone_region,
    )
    return service.to_out(prospect, runtime.keyring)


@router.delete("/{prospect_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_prospect(
    prospect_id: uuid.UUID, principal: CurrentPrincipal, session: Session
) -> None:
    await service.delete_prospect(session, principal, prospect_id)


@router.post("/{prospect_id}/consents", response_model=ProspectOut)
async def record_consent(
    prospect_id: uuid.UUID,
    body: ConsentIn,
    principal: CurrentPrincipal,
    session: Session,
    runtime: RuntimeDep,
) -> ProspectOut:
    prospect = await service.record_consent(session, principal, prospect_id, body)
    return service.to_out(prospect, runtime.keyring)


@router.post("/{prospect_id}/opt-out", response_model=ProspectOut)
async def opt_out(
    prospect_id: uuid.UUID,
    body: OptOutIn,
    principal: CurrentPrincipal,
    session: Session,
    runtime: RuntimeDep,
) -> ProspectOut:
    prospect = await service.opt_out(session, principal, prospect_id, source=body.source)
    return service.to_out(prospect, runtime.keyring)


@router.post("/{prospect_id}/erase", response_model=ProspectOut)
async def erase(
    prospect_id: uuid.UUID, principal: CurrentPrincipal, session: Session, runtime: RuntimeDep
) -> ProspectOut:
    prospect = await service.erase(session, principal, prospect_id, keyring=runtime.keyring)
    return service.to_out(prospect, runtime.keyring)
