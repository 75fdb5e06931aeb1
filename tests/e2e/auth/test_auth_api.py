"""Login, token rotation, API keys, rate-limited logins, and the probes."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import httpx
import jwt
import pytest
import redis.asyncio as aioredis

from mcep.app import create_app
from mcep.auth.models import Role
from mcep.runtime import Runtime, build_runtime
from tests.conftest import PASSWORD, Actor, make_actor, make_settings

REDIS_URL = os.environ.get("MCEP_TEST_REDIS_URL")

TOKEN = "/api/v1/auth/token"


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    return await client.post(TOKEN, data={"username": email, "password": password})


async def test_password_login_gives_15_minute_access_and_refresh(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    pm = await make_actor(runtime, Role.PM)
    response = await login(client, pm.email)
    assert response.status_code == 200, response.text
    pair = response.json()
    claims = jwt.decode(pair["access_token"], options={"verify_signature": False})
    assert (
        claims["exp"] - claims.get("iat", claims["exp"] - 900) <= 900 and pair["expires_in"] == 900
    )
    me = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {pair['access_token']}"}
    )
    assert me.json()["email"] == pm.email and me.json()["role"] == "pm"
    # A refresh token is not an access token.
    assert (
        await client.get(
            "/api/v1/auth/me", headers={"Authorization": f"Bearer {pair['refresh_token']}"}
        )
    ).status_code == 401


async def test_refresh_rotates_and_the_old_token_dies(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    pm = await make_actor(runtime, Role.PM)
    first = (await login(client, pm.email)).json()
    second = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert second.status_code == 200
    replay = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert replay.status_code == 401


async def test_wrong_password_and_unknown_user_look_the_same(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    pm = await make_actor(runtime, Role.PM)
    wrong = await login(client, pm.email, "not the password")
    unknown = await login(client, "nobody@example.com")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"]


async def test_logins_are_rate_limited(client: httpx.AsyncClient, runtime: Runtime) -> None:
    pm = await make_actor(runtime, Role.PM)
    codes = [(await login(client, pm.email, "bad password")).status_code for _ in range(6)]
    assert codes == [401] * 5 + [429]
    # Even the right password waits until the window passes.
    blocked = await login(client, pm.email)
    assert blocked.status_code == 429 and "Retry-After" in blocked.headers


async def test_api_key_shown_once_works_and_can_be_revoked(
    client: httpx.AsyncClient, runtime: Runtime, actors: dict[str, Actor]
) -> None:
    h = actors["pm"].headers
    created = (
        await client.post("/api/v1/auth/api-keys", json={"name": "crm sync"}, headers=h)
    ).json()
    secret = created["key"]
    listed = (await client.get("/api/v1/auth/api-keys", headers=h)).json()
    assert all("key" not in k for k in listed) and listed[0]["prefix"] == created["prefix"]
    me = await client.get("/api/v1/auth/me", headers={"X-API-Key": secret})
    assert me.status_code == 200 and me.json()["email"] == actors["pm"].email
    assert (
        await client.get("/api/v1/auth/me", headers={"X-API-Key": secret[:-2] + "xx"})
    ).status_code == 401
    await client.delete(f"/api/v1/auth/api-keys/{created['id']}", headers=h)
    assert (await client.get("/api/v1/auth/me", headers={"X-API-Key": secret})).status_code == 401


async def test_admin_creates_users_with_clear_errors(
    client: httpx.AsyncClient, actors: dict[str, Actor]
) -> None:
    h = actors["admin"].headers
    ok = await client.post(
        "/api/v1/users",
        json={
            "email": "new.pm@example.com",
            "password": "long password",
            "role": "pm",
            "pm_name": "New PM",
        },
        headers=h,
    )
    assert ok.status_code == 201 and ok.json()["pm_name"] == "New PM"
    dup = await client.post(
        "/api/v1/users",
        json={"email": "new.pm@example.com", "password": "long password", "role": "compliance"},
        headers=h,
    )
    assert dup.status_code == 409
    no_name = await client.post(
        "/api/v1/users",
        json={"email": "x@example.com", "password": "long password", "role": "pm"},
        headers=h,
    )
    assert no_name.status_code == 422 and no_name.json()["errors"][0]["field"] == "pm_name"
    bad_role = await client.post(
        "/api/v1/users",
        json={"email": "y@example.com", "password": "long password", "role": "root"},
        headers=h,
    )
    assert bad_role.status_code == 422 and bad_role.json()["errors"][0]["field"] == "role"


async def test_probes(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["database"] == "ok"
    assert (await client.get("/openapi.json")).status_code == 200
    assert (await client.get("/docs")).status_code == 200


async def test_readyz_reports_pending_migrations(tmp_path: Path) -> None:
    runtime = build_runtime(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}", tmp_path))
    try:
        app = create_app(runtime.settings, runtime=runtime)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mcep.test") as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["database"] == "migrations pending"
            assert (await client.get("/healthz")).status_code == 200
    finally:
        await runtime.aclose()


@pytest.mark.skipif(not REDIS_URL, reason="needs MCEP_TEST_REDIS_URL (.ci/run sets it)")
async def test_login_limit_is_shared_through_redis(database_url: str, tmp_path: Path) -> None:
    """Two API processes sharing Redis share one login budget."""
    assert REDIS_URL is not None
    await aioredis.from_url(REDIS_URL).flushdb()  # a database of its own, for tests only
    settings = make_settings(
        database_url, tmp_path, redis_url=REDIS_URL, login_rate_limit="3/minute"
    )
    first, second = build_runtime(settings), build_runtime(settings)
    email = f"shared-{uuid.uuid4().hex[:8]}@example.com"
    try:
        codes = []
        for runtime in (first, second, first, second):
            app = create_app(settings, runtime=runtime)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://mcep.test") as c:
                codes.append((await login(c, email, "wrong password")).status_code)
        assert codes == [401, 401, 401, 429]
    finally:
        await first.aclose()
        await second.aclose()
