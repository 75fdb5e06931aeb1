"""A throw-away database for the benchmark scripts (``python scripts/bench_*.py``).

On PostgreSQL a fresh database beside the one named (dropped afterwards with
:func:`drop_database`); on SQLite a file in a temporary directory.
"""

from __future__ import annotations

import tempfile
import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine


async def _admin(url: str, statement: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        await connection.execute(text(statement))
    await engine.dispose()


async def scratch_database(url: str) -> tuple[str, str | None]:
    """The scratch database's URL, and its name when it must be dropped afterwards."""
    if url.startswith("sqlite"):
        return f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/bench.db", None
    name = f"mcep_bench_{uuid.uuid4().hex[:8]}"
    await _admin(url, f"CREATE DATABASE {name}")
    return url.rpartition("/")[0] + "/" + name, name


async def drop_database(url: str, name: str) -> None:
    await _admin(url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
