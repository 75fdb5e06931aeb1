"""Shared fixtures: a fresh, migrated database per test on SQLite and on PostgreSQL.

SQLite tests copy a template file migrated once per session. PostgreSQL tests (when
``MCEP_TEST_POSTGRES_URL`` names a server) clone a migrated template database per test, so
every test starts from the real schema and nothing leaks between tests.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from mcep.app import create_app
from mcep.auth import service as auth_service
from mcep.auth.models import Role, User
from mcep.db import migrate
from mcep.db.engine import create_engine
from mcep.runtime import Runtime, build_runtime
from mcep.settings import Settings

POSTGRES_URL = os.environ.get("MCEP_TEST_POSTGRES_URL")
MASTER_KEY = base64.urlsafe_b64encode(b"k" * 32).decode()
PASSWORD = "correct horse battery staple"
WHATSAPP_APP_SECRET = "meta-app-secret-for-tests"
WHATSAPP_VERIFY_TOKEN = "verify-me"
BACKENDS = ["sqlite", "postgres"]


def _run(coro: Coroutine[Any, Any, None]) -> None:
    """Run set-up work in its own loop, even when a test's loop is already running."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, coro).result()


async def _migrate(url: str) -> None:
    engine = create_engine(url)
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    _run(_migrate(f"sqlite+aiosqlite:///{path}"))
    return path


def _pg_url(database: str) -> str:
    assert POSTGRES_URL is not None
    base, _, _ = POSTGRES_URL.rpartition("/")
    return f"{base}/{database}"


async def _pg_admin(statement: str) -> None:
    engine = create_async_engine(POSTGRES_URL or "", isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL tests need MCEP_TEST_POSTGRES_URL (.ci/run sets it)")
    name = f"mcep_tpl_{os.getpid()}"
    _run(_pg_admin(f"DROP DATABASE IF EXISTS {name}"))
    _run(_pg_admin(f"CREATE DATABASE {name}"))
    _run(_migrate(_pg_url(name)))
    yield name
    _run(_pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture(params=BACKENDS)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A freshly migrated database, on each backend."""
    if request.param == "sqlite":
        path = tmp_path / "mcep.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    template = request.getfixturevalue("postgres_template")
    name = f"mcep_t_{uuid.uuid4().hex[:16]}"
    await _pg_admin(f"CREATE DATABASE {name} TEMPLATE {template}")
    try:
        yield _pg_url(name)
    finally:
        await _pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def make_settings(database_url: str, tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "master_key": MASTER_KEY,
        "jwt_secret": "test-secret-" + "x" * 32,
        "key_file": tmp_path / "unused.key",
        "login_rate_limit": "5/minute",
        "whatsapp_app_secret": WHATSAPP_APP_SECRET,
        "whatsapp_verify_token": WHATSAPP_VERIFY_TOKEN,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def runtime(database_url: str, tmp_path: Path) -> AsyncIterator[Runtime]:
    rt = build_runtime(make_settings(database_url, tmp_path))
    try:
        yield rt
    finally:
        await rt.aclose()


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(runtime.settings, runtime=runtime)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://mcep.test") as c:
        yield c


@dataclass(frozen=True)
class Actor:
    user_id: uuid.UUID
    email: str
    role: Role
    pm_id: uuid.UUID | None
    headers: dict[str, str]


async def make_actor(runtime: Runtime, role: Role, *, name: str | None = None) -> Actor:
    """A user of ``role`` (a PM gets its own PM record) with a valid bearer token."""
    label = name or f"{role.value}-{uuid.uuid4().hex[:6]}"
    async with runtime.sessions() as session, session.begin():
        user: User = await auth_service.create_user(
            session,
            email=f"{label}@example.com",
            password=PASSWORD,
            role=role,
            pm_name=label if role is Role.PM else None,
            actor="test",
        )
    claims = runtime.signer.issue(user.id, "access", timedelta(minutes=15))
    headers = {"Authorization": f"Bearer {runtime.signer.encode(claims)}"}
    return Actor(user.id, user.email, role, user.pm_id, headers)


@pytest.fixture
async def actors(runtime: Runtime) -> dict[str, Actor]:
    """One of each kind of caller: admin, compliance, and two PMs."""
    return {
        "admin": await make_actor(runtime, Role.ADMIN),
        "compliance": await make_actor(runtime, Role.COMPLIANCE),
        "pm": await make_actor(runtime, Role.PM),
        "other_pm": await make_actor(runtime, Role.PM),
    }
