"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect

from mcep.db import migrate
from mcep.db.registry import Base
from mcep.runtime import Runtime


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_models_and_migrations_agree(runtime: Runtime) -> None:
    async with runtime.engine.connect() as connection:
        assert await connection.run_sync(_diff) == []
    assert await migrate.is_current(runtime.engine)


async def test_downgrade_to_base_and_back(runtime: Runtime) -> None:
    async with runtime.engine.begin() as connection:
        await connection.run_sync(lambda c: _command(c, "downgrade", "base"))
    async with runtime.engine.connect() as connection:
        tables = await connection.run_sync(lambda c: inspect(c).get_table_names())
    assert set(tables) <= {"alembic_version"}
    await migrate.upgrade(runtime.engine)
    assert await migrate.is_current(runtime.engine)


def _command(connection: Connection, name: str, revision: str) -> None:
    from alembic import command

    config = migrate.alembic_config()
    config.attributes["connection"] = connection
    getattr(command, name)(config, revision)
