"""The FastAPI application, assembled from every domain's router."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from mcep.analytics import graphql
from mcep.api import health, problems
from mcep.auth import api as auth_api
from mcep.campaigns import api as campaigns_api
from mcep.contacts import api as contacts_api
from mcep.dispatch import api as dispatch_api
from mcep.experiments import api as experiments_api
from mcep.fleet import api as fleet_api
from mcep.inbound import api as inbound_api
from mcep.runtime import Runtime, build_runtime
from mcep.scoring import api as scoring_api
from mcep.settings import Settings


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> FastAPI:
    """Build the API; a given ``runtime`` is used as is, otherwise one is built at start-up."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = runtime is None
        app.state.runtime = runtime or build_runtime(settings or Settings())
        try:
            yield
        finally:
            if owned:
                await app.state.runtime.aclose()

    app = FastAPI(
        title="MCEP",
        summary="Multi-Channel Client Engagement Platform",
        version="0.1.0",
        lifespan=lifespan,
    )
    if runtime is not None:
        app.state.runtime = runtime
    problems.install(app)
    app.include_router(health.router)
    app.include_router(auth_api.router)
    app.include_router(contacts_api.router)
    app.include_router(campaigns_api.profiles)
    app.include_router(campaigns_api.templates)
    app.include_router(campaigns_api.campaigns)
    app.include_router(dispatch_api.router)
    app.include_router(fleet_api.router)
    app.include_router(inbound_api.router)
    app.include_router(experiments_api.router)
    app.include_router(graphql.router(), tags=["graphql"])
    app.include_router(scoring_api.leads)
    app.include_router(scoring_api.models)
    return app
