"""Alembic, driven from code: ``mcep db upgrade``, start-up upgrades and readiness checks."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", "mcep:migrations")
    return config


def head_revisions() -> set[str]:
    """Every head: domains may add migrations on branches of their own (``upgrade heads``)."""
    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


def head_revision() -> str:
    return ",".join(sorted(head_revisions()))


def _upgrade(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _current(connection: Connection) -> set[str]:
    return set(MigrationContext.configure(connection).get_current_heads())


async def upgrade(engine: AsyncEngine, revision: str = "heads") -> None:
    """Bring the database at ``engine`` up to ``revision`` (every head by default)."""
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade, revision)


async def current_revisions(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        return await connection.run_sync(_current)


async def current_revision(engine: AsyncEngine) -> str:
    return ",".join(sorted(await current_revisions(engine))) or "none"


async def is_current(engine: AsyncEngine) -> bool:
    return await current_revisions(engine) == head_revisions()
