"""Routes for experiments: create on a draft campaign, read, delete before launch, results."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, status

from mcep.api.deps import CurrentPrincipal, Session
from mcep.api.schemas import Page, PageParams
from mcep.auth.principal import Permission
from mcep.experiments import repository, service
from mcep.experiments.design import ExperimentStatus
from mcep.experiments.models import Experiment
from mcep.experiments.schemas import ExperimentCreate, ExperimentOut, ExperimentResults

router = APIRouter(prefix="/api/v1/experiments", tags=["experiments"])
Paging = Annotated[PageParams, Depends()]


@router.get("", response_model=Page[ExperimentOut])
async def list_experiments(
    principal: CurrentPrincipal,
    session: Session,
    page: Paging,
    campaign_id: uuid.UUID | None = None,
    status: ExperimentStatus | None = None,
) -> Page[ExperimentOut]:
    principal.require(Permission.OWNED_READ)
    where = []
    if campaign_id is not None:
        where.append(Experiment.campaign_id == campaign_id)
    if status is not None:
        where.append(Experiment.status == status)
    rows, total = await repository.list_owned(
        session, principal, limit=page.limit, offset=page.offset, where=where
    )
    items = [service.experiment_out(e) for e in rows]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.post("", response_model=ExperimentOut, status_code=status.HTTP_201_CREATED)
async def create_experiment(
    body: ExperimentCreate, principal: CurrentPrincipal, session: Session
) -> ExperimentOut:
    """An experiment on a draft campaign; its variants become the campaign's."""
    experiment = await service.create_experiment(session, principal, body, now=datetime.now(UTC))
    return service.experiment_out(experiment)


@router.get("/{experiment_id}", response_model=ExperimentOut)
async def get_experiment(
    experiment_id: uuid.UUID, principal: CurrentPrincipal, session: Session
) -> ExperimentOut:
    principal.require(Permission.OWNED_READ)
    return service.experiment_out(await repository.get_owned(session, principal, experiment_id))


@router.delete("/{experiment_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_experiment(
    experiment_id: uuid.UUID, principal: CurrentPrincipal, session: Session
) -> None:
    """Only before its campaign is launched."""
    await service.delete_experiment(session, principal, experiment_id)


@router.get("/{experiment_id}/results", response_model=ExperimentResults)
async def experiment_results(
    experiment_id: uuid.UUID, principal: CurrentPrincipal, session: Session
) -> ExperimentResults:
    """Per-arm counts, rates and intervals, every test against control (Holm adjusted),
    the always-valid test, chance to beat control, lift over control and hold-out, the
    sample ratio check and the test-then-send decision."""
    return await service.results(session, principal, experiment_id, now=datetime.now(UTC))
