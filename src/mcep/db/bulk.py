"""Set-based inserts for hot paths: PostgreSQL COPY, one executemany elsewhere."""

from __future__ import annotations

import json
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import JSON, Table
from sqlalchemy.ext.asyncio import AsyncSession


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


async def bulk_insert(session: AsyncSession, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert complete rows in the session's transaction, as fast as the backend allows."""
    if not rows:
        return
    connection = await session.connection()
    if connection.dialect.name != "postgresql":
        await session.execute(table.insert(), list(rows))
        return
    columns = [c for c in table.columns if c.name in rows[0]]
    names = [c.name for c in columns]
    json_names = [c.name for c in columns if isinstance(c.type, JSON)]
    if json_names:
        rows = [{**row, **{n: _json(row[n]) for n in json_names}} for row in rows]
    pick = itemgetter(*names)
    records = [pick(row) for row in rows] if len(names) > 1 else [(row[names[0]],) for row in rows]
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    await driver.copy_records_to_table(table.name, records=records, columns=names)
