"""A batch of rows as a table to join in one statement (``UPDATE ... FROM rows``).

PostgreSQL gets ``unnest`` over one typed array per column: the statement's text is the same
for every batch size, so it is compiled and prepared once. SQLite gets a ``VALUES`` common
table expression. Either way a batch's worth of per-row updates is one statement.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import FromClause, bindparam, column, func, values
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import TypeEngine

Columns = Sequence[tuple[str, TypeEngine[Any]]]


def rowset(dialect: str, name: str, columns: Columns, rows: Sequence[Sequence[Any]]) -> FromClause:
    """``rows`` (tuples in ``columns`` order) as a selectable named ``name``."""
    if not rows:
        raise ValueError("a row set needs at least one row")
    names = [n for n, _ in columns]
    if dialect == "postgresql":
        arrays = [
            bindparam(f"{name}_{n}", [row[i] for row in rows], type_=ARRAY(t))
            for i, (n, t) in enumerate(columns)
        ]
        return func.unnest(*arrays).table_valued(*names).render_derived(name=name)
    table = values(*(column(n, t) for n, t in columns), name=name).data(
        [tuple(row) for row in rows]
    )
    return table.cte(name)
