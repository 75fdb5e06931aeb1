"""Auth rules: users, logins, token rotation and API keys. Flushes; never commits."""

from __future__ import annotations

import hmac
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from mcep.audit import service as audit
from mcep.auth.models import ApiKey, PortfolioManager, RefreshToken, Role, User
from mcep.auth.principal import Principal
from mcep.auth.schemas import TokenPair
from mcep.auth.security import (
    TokenSigner,
    api_key_prefix,
    hash_api_key,
    hash_password,
    new_api_key,
    verify_password,
)
from mcep.errors import Conflict, NotFound, Unauthorized, ValidationFailed


def _principal(user: User) -> Principal:
    return Principal(user_id=user.id, email=user.email, role=user.role, pm_id=user.pm_id)


async def create_user(
    session: AsyncSession,
    *,
    email: str,
    password: str,
    role: Role,
    pm_name: str | None,
    actor: str,
) -> User:
    """Create a user; a PM user gets its own PortfolioManager (named ``pm_name``)."""
    email = email.strip().lower()
    if role is Role.PM and not pm_name:
        raise ValidationFailed.of("pm_name", "a PM user needs the PM's name")
    if role is not Role.PM and pm_name:
        raise ValidationFailed.of("pm_name", f"only PM users have a PM name, not {role}")
    if await session.scalar(select(User.id).where(User.email == email)):
        raise Conflict("a user with this e-mail already exists")
    pm = PortfolioManager(name=pm_name) if pm_name else None
    if pm is not None:
        session.add(pm)
        await session.flush()
    user = User(email=email, password_hash=hash_password(password), role=role, pm=pm)
    session.add(user)
    await session.flush()
    await audit.append(
        session,
        actor=actor,
        action="user.created",
        object_type="user",
        object_id=str(user.id),
        details={"role": role.value, "pm_id": str(pm.id) if pm else None},
    )
    return user


async def authenticate(session: AsyncSession, email: str, password: str) -> User:
    user = await session.scalar(select(User).where(User.email == email.strip().lower()))
    ok = verify_password(user.password_hash if user else None, password)
    if user is None or not ok or not user.is_active:
        raise Unauthorized("wrong e-mail or password")
    return user


async def issue_tokens(
    session: AsyncSession,
    signer: TokenSigner,
    user: User,
    *,
    access_ttl: timedelta,
    refresh_ttl: timedelta,
) -> TokenPair:
    access = signer.issue(user.id, "access", access_ttl)
    refresh = signer.issue(user.id, "refresh", refresh_ttl)
    session.add(RefreshToken(jti=refresh.jti, user_id=user.id, expires_at=refresh.expires_at))
    await session.flush()
    return TokenPair(
        access_token=signer.encode(access),
        refresh_token=signer.encode(refresh),
        expires_in=int(access_ttl.total_seconds()),
    )


async def rotate_refresh(
    session: AsyncSession,
    signer: TokenSigner,
    token: str,
    *,
    access_ttl: timedelta,
    refresh_ttl: timedelta,
) -> TokenPair:
    """Trade a refresh token for a new pair; the old one can never be used again."""
    claims = signer.decode(token, "refresh")
    row = await session.get(RefreshToken, claims.jti, with_for_update=True)
    if row is None or row.revoked_at is not None:
        raise Unauthorized("the refresh token is invalid or was already used")
    row.revoked_at = datetime.now(UTC)
    user = await session.get(User, claims.user_id)
    if user is None or not user.is_active:
        raise Unauthorized("the user is no longer active")
    return await issue_tokens(session, signer, user, access_ttl=access_ttl, refresh_ttl=refresh_ttl)


async def principal_for_user(session: AsyncSession, user_id: uuid.UUID) -> Principal:
    user = await session.get(User, user_id)
    if user is None or not user.is_active:
        raise Unauthorized("the user is no longer active")
    return _principal(user)


async def principal_for_api_key(session: AsyncSession, secret: str, *, now: datetime) -> Principal:
    prefix = api_key_prefix(secret)
    key = await session.scalar(select(ApiKey).where(ApiKey.prefix == prefix)) if prefix else None
    if key is None or not hmac.compare_digest(key.key_hash, hash_api_key(secret)):
        raise Unauthorized("the API key is not valid")
    if key.revoked_at is not None:
        raise Unauthorized("the API key was revoked")
    key.last_used_at = now
    return await principal_for_user(session, key.user_id)


async def create_api_key(
    session: AsyncSession, principal: Principal, name: str
) -> tuple[ApiKey, str]:
    fresh = new_api_key()
    key = ApiKey(user_id=principal.user_id, name=name, prefix=fresh.prefix, key_hash=fresh.key_hash)
    session.add(key)
    await session.flush()
    await audit.append(
        session,
        actor=principal.actor,
        action="api_key.created",
        object_type="api_key",
        object_id=str(key.id),
        details={"name": name, "prefix": fresh.prefix},
    )
    return key, fresh.secret


async def list_api_keys(session: AsyncSession, principal: Principal) -> list[ApiKey]:
    stmt = select(ApiKey).where(ApiKey.user_id == principal.user_id).order_by(ApiKey.created_at)
    return list((await session.scalars(stmt)).all())


async def revoke_api_key(session: AsyncSession, principal: Principal, key_id: uuid.UUID) -> ApiKey:
    key = await session.get(ApiKey, key_id)
    if key is None or key.user_id != principal.user_id:
        raise NotFound("no such API key")
    if key.revoked_at is None:
        key.revoked_at = datetime.now(UTC)
        await audit.append(
            session,
            actor=principal.actor,
            action="api_key.revoked",
            object_type="api_key",
            object_id=str(key.id),
        )
    return key


async def list_users(session: AsyncSession, *, limit: int, offset: int) -> tuple[list[User], int]:
    total = await session.scalar(select(func.count()).select_from(User)) or 0
    rows = await session.scalars(
        select(User).order_by(User.created_at, User.id).limit(limit).offset(offset)
    )
    return list(rows.all()), total
