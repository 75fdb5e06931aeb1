"""Typed dependencies: the request's session (which owns the transaction) and its caller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession

from mcep.auth import service as auth_service
from mcep.auth.principal import Principal
from mcep.errors import Unauthorized
from mcep.runtime import Runtime

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)
api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False)


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_session(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed when the handler returns, else rolled back."""
    async with runtime.sessions() as session:
        yield session
        await session.commit()


Session = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def get_principal(
    runtime: RuntimeDep,
    session: Session,
    bearer: Annotated[str | None, Depends(oauth2_scheme)],
    api_key: Annotated[str | None, Depends(api_key_scheme)],
) -> Principal:
    if bearer:
        claims = runtime.signer.decode(bearer, "access")
        return await auth_service.principal_for_user(session, claims.user_id)
    if api_key:
        return await auth_service.principal_for_api_key(session, api_key, now=datetime.now(UTC))
    raise Unauthorized("send a bearer token or an X-API-Key header")


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
