"""Auth routes: OAuth2 password login, refresh, API keys, and user management for admins."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request, status
from fastapi.security import OAuth2PasswordRequestForm

from mcep.api.deps import CurrentPrincipal, RuntimeDep, Session
from mcep.api.schemas import Page, PageParams
from mcep.auth import service
from mcep.auth.models import ApiKey, User
from mcep.auth.principal import Permission
from mcep.auth.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    RefreshIn,
    TokenPair,
    UserCreate,
    UserOut,
)
from mcep.errors import TooManyRequests
from mcep.runtime import Runtime

router = APIRouter(prefix="/api/v1", tags=["auth"])


def _ttls(runtime: Runtime) -> dict[str, timedelta]:
    return {
        "access_ttl": timedelta(minutes=runtime.settings.access_token_minutes),
        "refresh_ttl": timedelta(days=runtime.settings.refresh_token_days),
    }


async def _check_login_rate(runtime: Runtime, request: Request, username: str) -> None:
    client = request.client.host if request.client else "unknown"
    for key in (f"login:user:{username.strip().lower()}", f"login:ip:{client}"):
        if not await runtime.login_limiter.hit(runtime.login_limit, key):
            raise TooManyRequests(
                "too many login attempts; wait a minute and try again",
                retry_after=int(runtime.login_limit.get_expiry()),
            )


@router.post("/auth/token", response_model=TokenPair)
async def token(
    request: Request,
    runtime: RuntimeDep,
    session: Session,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
) -> TokenPair:
    """OAuth2 password flow: a 15-minute access token and a rotating refresh token."""
    await _check_login_rate(runtime, request, form.username)
    user = await service.authenticate(session, form.username, form.password)
    return await service.issue_tokens(session, runtime.signer, user, **_ttls(runtime))


@router.post("/auth/refresh", response_model=TokenPair)
async def refresh(body: RefreshIn, runtime: RuntimeDep, session: Session) -> TokenPair:
    return await service.rotate_refresh(
        session, runtime.signer, body.refresh_token, **_ttls(runtime)
    )


def _user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        email=user.email,
        role=user.role,
        pm_id=user.pm_id,
        pm_name=user.pm.name if user.pm else None,
        is_active=user.is_active,
        created_at=user.created_at,
    )


@router.get("/auth/me", response_model=UserOut)
async def me(principal: CurrentPrincipal, session: Session) -> UserOut:
    user = await session.get(User, principal.user_id)
    assert user is not None
    return _user_out(user)


def _key_out(key: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        created_at=key.created_at,
        revoked_at=key.revoked_at,
        last_used_at=key.last_used_at,
    )


@router.post("/auth/api-keys", response_model=ApiKeyCreated, status_code=status.HTTP_201_CREATED)
async def create_api_key(
    body: ApiKeyCreate, principal: CurrentPrincipal, session: Session
) -> ApiKeyCreated:
    """Create a key for machine clients acting as the caller; the secret is shown only here."""
    key, secret = await service.create_api_key(session, principal, body.name)
    return ApiKeyCreated(**_key_out(key).model_dump(), key=secret)


@router.get("/auth/api-keys", response_model=list[ApiKeyOut])
async def list_api_keys(principal: CurrentPrincipal, session: Session) -> list[ApiKeyOut]:
    return [_key_out(k) for k in await service.list_api_keys(session, principal)]


@router.delete("/auth/api-keys/{key_id}", response_model=ApiKeyOut)
async def revoke_api_key(
    key_id: uuid.UUID, principal: CurrentPrincipal, session: Session
) -> ApiKeyOut:
    return _key_out(await service.revoke_api_key(session, principal, key_id))


@router.get("/users", response_model=Page[UserOut])
async def list_users(
    principal: CurrentPrincipal, session: Session, page: Annotated[PageParams, Depends()]
) -> Page[UserOut]:
    principal.require(Permission.USERS_MANAGE)
    users, total = await service.list_users(session, limit=page.limit, offset=page.offset)
    return Page(
        items=[_user_out(u) for u in users], total=total, limit=page.limit, offset=page.offset
    )


@router.post("/users", response_model=UserOut, status_code=status.HTTP_201_CREATED)
async def create_user(body: UserCreate, principal: CurrentPrincipal, session: Session) -> UserOut:
    principal.require(Permission.USERS_MANAGE)
    user = await service.create_user(
        session,
        email=body.email,
        password=body.password,
        role=body.role,
        pm_name=body.pm_name,
        actor=principal.actor,
    )
    return _user_out(user)
