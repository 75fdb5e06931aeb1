"""GraphQL at ``/graphql`` (GraphiQL in the browser): campaign funnels and experiment results.

The same callers, permissions and per-PM isolation as the REST API: the request's bearer token
or API key decides who asks, and the services answer (another PM's object is "not found").
Types mirror the REST schemas through Strawberry's pydantic integration, so both APIs always
say the same thing.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

import strawberry
from cross_web import HTTPException
from fastapi import Depends
from graphql import GraphQLError
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.experimental.pydantic import type as pydantic_type
from strawberry.fastapi import BaseContext, GraphQLRouter
from strawberry.scalars import JSON

from mcep.analytics import funnel as funnel_service
from mcep.api.deps import (
    RuntimeDep,
    Session,
    api_key_scheme,
    get_principal,
    oauth2_scheme,
)
from mcep.auth.principal import Principal
from mcep.errors import MCEPError, Unauthorized
from mcep.experiments import schemas as ex
from mcep.experiments import service as experiments_service


class Context(BaseContext):
    def __init__(self, principal: Principal | None, session: AsyncSession) -> None:
        super().__init__()
        self._principal = principal
        self.session = session

    @property
    def principal(self) -> Principal:
        if self._principal is None:
            raise GraphQLError(
                "send a bearer token or an X-API-Key header",
                extensions={"code": "unauthorized", "status": 401},
            )
        return self._principal


async def get_context(
    runtime: RuntimeDep,
    session: Session,
    bearer: Annotated[str | None, Depends(oauth2_scheme)],
    api_key: Annotated[str | None, Depends(api_key_scheme)],
) -> Context:
    """The caller, if any: GraphiQL loads without credentials, queries need them."""
    try:
        principal = await get_principal(runtime, session, bearer, api_key)
    except Unauthorized:
        principal = None
    return Context(principal, session)


@pydantic_type(model=ex.IntervalOut, all_fields=True)
class Interval:
    pass


@pydantic_type(model=ex.TestOut, all_fields=True)
class Test:
    pass


@pydantic_type(model=ex.LiftOut, all_fields=True)
class Lift:
    pass


@pydantic_type(model=ex.ArmResult, all_fields=True)
class ArmResult:
    pass


@pydantic_type(model=ex.SequentialOut, all_fields=True)
class Sequential:
    pass


@pydantic_type(model=ex.ComparisonResult, all_fields=True)
class Comparison:
    selected_test: str = strawberry.field(description="chi_square or fisher")


@pydantic_type(model=ex.HoldoutResult, all_fields=True)
class Holdout:
    pass


@pydantic_type(model=ex.HoldoutLift, all_fields=True)
class HoldoutLift:
    pass


@pydantic_type(model=ex.SrmResult, all_fields=True)
class Srm:
    observed: JSON
    expected_share: JSON


@pydantic_type(model=ex.ArmEvidenceOut, all_fields=True)
class ArmEvidence:
    pass


@pydantic_type(model=ex.DecisionOut, all_fields=True)
class Decision:
    state: str = strawberry.field(description="testing, winner or no_winner")


@pydantic_type(model=ex.RolloutResult, all_fields=True)
class Rollout:
    by_arm: JSON


@pydantic_type(model=ex.ExperimentResults, all_fields=True)
class ExperimentResults:
    pass


@strawberry.type
class FunnelRow:
    variant: str
    channel: str
    queued: int
    waiting: int
    sent: int
    delivered: int | None = strawberry.field(description="null where the channel has no receipts")
    read: int | None = strawberry.field(description="null where the channel has no receipts")
    replied: int
    failed: int
    cancelled: int


def _graphql_error(exc: MCEPError) -> GraphQLError:
    return GraphQLError(exc.detail, extensions={"code": exc.code, "status": exc.status_code})


@strawberry.type
class Query:
    @strawberry.field(description="Per-variant statistics of an experiment, as of now.")
    async def experiment_results(
        self, info: strawberry.Info[Context, None], id: uuid.UUID
    ) -> ExperimentResults:
        context = info.context
        try:
            results = await experiments_service.results(
                context.session, context.principal, id, now=datetime.now(UTC)
            )
        except MCEPError as exc:
            raise _graphql_error(exc) from exc
        return ExperimentResults.from_pydantic(results)

    @strawberry.field(description="A campaign's funnel per variant and channel.")
    async def campaign_funnel(
        self, info: strawberry.Info[Context, None], id: uuid.UUID
    ) -> list[FunnelRow]:
        context = info.context
        try:
            rows = await funnel_service.campaign_funnel(context.session, context.principal, id)
        except MCEPError as exc:
            raise _graphql_error(exc) from exc
        return [FunnelRow(**{**vars(r), "channel": r.channel.value}) for r in rows]


schema = strawberry.Schema(query=Query)


class _Router(GraphQLRouter[Context, None]):
    def decode_json(self, data: str | bytes) -> object:
        """A body that is not UTF-8 JSON holding an object (or a batch) is a 400, not a crash
        further on."""
        try:
            decoded = super().decode_json(data)
        except UnicodeDecodeError as exc:
            raise HTTPException(400, "the request body is not UTF-8 JSON") from exc
        except RecursionError as exc:
            raise HTTPException(400, "the request body nests too deeply") from exc
        if not isinstance(decoded, dict | list):
            raise HTTPException(400, "the request body must be a JSON object")
        return decoded


def router() -> GraphQLRouter[Context, None]:
    return _Router(schema, context_getter=get_context, path="/graphql")
