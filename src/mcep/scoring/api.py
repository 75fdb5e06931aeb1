"""Routes for leads (scores, explanations, advisor feedback) and the model registry."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, status

from mcep.api.deps import CurrentPrincipal, RuntimeDep, Session
from mcep.api.schemas import Page, PageParams
from mcep.auth.principal import Permission
from mcep.scoring import repository, service
from mcep.scoring.champion import ModelCache
from mcep.scoring.registry import MODEL_NAME, ModelVersionInfo
from mcep.scoring.schemas import (
    ChampionOut,
    FeedbackIn,
    FeedbackOut,
    LeadDetailOut,
    LeadOut,
    ModelVersionOut,
    PromoteIn,
    RollbackIn,
)
from mcep.scoring.store import DatabaseModelRegistry

leads = APIRouter(prefix="/api/v1/leads", tags=["leads"])
models = APIRouter(prefix="/api/v1/models", tags=["models"])
Paging = Annotated[PageParams, Depends()]
VersionNumber = Annotated[int, Path(ge=1, le=2**31 - 1, description="Version number")]
ModelName = Annotated[str, Query(min_length=1, max_length=64, description="Model family")]


def model_cache(request: Request) -> ModelCache:
    """This API process's scorers (made on first use, kept on the application)."""
    cache: ModelCache | None = getattr(request.app.state, "scoring_models", None)
    if cache is None:
        cache = ModelCache()
        request.app.state.scoring_models = cache
    return cache


Models = Annotated[ModelCache, Depends(model_cache)]


# --- leads ---------------------------------------------------------------------------------


def lead_filter(
    score_min: Annotated[float | None, Query(ge=0, le=100)] = None,
    score_max: Annotated[float | None, Query(ge=0, le=100)] = None,
    qualified: bool | None = None,
    pm_id: Annotated[uuid.UUID | None, Query(description="Compliance: one PM's leads")] = None,
) -> repository.LeadFilter:
    return repository.LeadFilter(
        score_min=score_min, score_max=score_max, qualified=qualified, pm_id=pm_id
    )


@leads.get("", response_model=Page[LeadOut])
async def list_leads(
    principal: CurrentPrincipal,
    session: Session,
    runtime: RuntimeDep,
    cache: Models,
    page: Paging,
    filters: Annotated[repository.LeadFilter, Depends(lead_filter)],
) -> Page[LeadOut]:
    """Scored prospects, highest score first, with threshold, trend and explanation."""
    principal.require(Permission.OWNED_READ)
    rows, total = await repository.list_leads(
        session, principal, filters, limit=page.limit, offset=page.offset
    )
    items = await service.lead_views(
        session, rows, keyring=runtime.keyring, models=cache, now=datetime.now(UTC)
    )
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@leads.get("/{prospect_id}", response_model=LeadDetailOut)
async def get_lead(
    prospect_id: uuid.UUID,
    principal: CurrentPrincipal,
    session: Session,
    runtime: RuntimeDep,
    cache: Models,
) -> LeadDetailOut:
    """One lead with its score history and the feedback it has had."""
    return await service.lead_detail(
        session, principal, prospect_id, keyring=runtime.keyring, models=cache,
        now=datetime.now(UTC),
    )  # fmt: skip


@leads.post(
    "/{prospect_id}/feedback", response_model=FeedbackOut, status_code=status.HTTP_201_CREATED
)
async def give_feedback(
    prospect_id: uuid.UUID,
    body: FeedbackIn,
    principal: CurrentPrincipal,
    session: Session,
    runtime: RuntimeDep,
) -> FeedbackOut:
    """An advisor's verdict (a training label), or a reset that lets the lead qualify again."""
    return await service.give_feedback(
        session, principal, prospect_id, body, keyring=runtime.keyring, now=datetime.now(UTC)
    )


# --- models --------------------------------------------------------------------------------


def _version_out(info: ModelVersionInfo, champions: dict[str, ModelVersionInfo]) -> ModelVersionOut:
    assert info.id is not None
    return ModelVersionOut(
        id=info.id,
        name=info.name,
        version=info.version,
        features=list(info.features),
        source=dict(info.source),
        metrics=dict(info.metrics),
        created_by=info.created_by,
        created_at=info.created_at,
        sha256=info.sha256,
        size=info.size,
        champion_of=sorted(s for s, c in champions.items() if c.id == info.id),
    )


@models.get("", response_model=Page[ModelVersionOut])
async def list_models(
    principal: CurrentPrincipal, session: Session, page: Paging, name: ModelName = MODEL_NAME
) -> Page[ModelVersionOut]:
    """Registered versions, newest first, with their hold-out metrics and champion scopes."""
    registry = DatabaseModelRegistry(session, actor=principal.actor)
    versions, total = await registry.versions(name, limit=page.limit, offset=page.offset)
    champions = await registry.champions(name)
    items = [_version_out(v, champions) for v in versions]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@models.get("/champions", response_model=list[ChampionOut])
async def list_champions(
    principal: CurrentPrincipal, session: Session, name: ModelName = MODEL_NAME
) -> list[ChampionOut]:
    """The version in charge of each scope."""
    champions = await DatabaseModelRegistry(session, actor=principal.actor).champions(name)
    return [
        ChampionOut(scope=scope, version=c.version, model_version_id=c.id or 0,
                    metrics=dict(c.metrics))
        for scope, c in sorted(champions.items())
    ]  # fmt: skip


@models.post("/rollback", response_model=ModelVersionOut)
async def rollback(
    principal: CurrentPrincipal,
    session: Session,
    body: RollbackIn | None = None,
    name: ModelName = MODEL_NAME,
) -> ModelVersionOut:
    """Reinstate the previous champion of a scope (admin or compliance); audited."""
    service.require_model_manager(principal)
    registry = DatabaseModelRegistry(session, actor=principal.actor)
    info = await registry.rollback(name, scope=(body or RollbackIn()).scope)
    return _version_out(info, await registry.champions(name))


@models.get("/{version}", response_model=ModelVersionOut)
async def get_model(
    version: VersionNumber,
    principal: CurrentPrincipal,
    session: Session,
    name: ModelName = MODEL_NAME,
) -> ModelVersionOut:
    registry = DatabaseModelRegistry(session, actor=principal.actor)
    return _version_out(await registry.get(name, version), await registry.champions(name))


@models.post("/{version}/promote", response_model=ModelVersionOut)
async def promote(
    version: VersionNumber,
    principal: CurrentPrincipal,
    session: Session,
    body: PromoteIn | None = None,
    name: ModelName = MODEL_NAME,
) -> ModelVersionOut:
    """Make a version the champion of a scope (admin or compliance); audited."""
    service.require_model_manager(principal)
    body = body or PromoteIn()
    registry = DatabaseModelRegistry(session, actor=principal.actor)
    info = await registry.promote(name, version, scope=body.scope, reason=body.reason)
    return _version_out(info, await registry.champions(name))
