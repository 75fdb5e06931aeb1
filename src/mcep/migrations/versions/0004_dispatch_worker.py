"""Dispatch worker: notices in the outbox (messages without a campaign, ``kind`` 'notice').

The opt-out confirmation is a message owed to the person, not part of any campaign, so
``messages.campaign_id`` becomes nullable and ``messages.kind`` says which one a row is.

On SQLite the column is changed in place, by the procedure SQLite documents for dropping a
NOT NULL constraint (rewrite the table's CREATE statement under ``writable_schema`` and bump
the schema version), not by a batch copy of the table: the embedded default enforces foreign
keys, the pragma that disables them is ignored inside the migration's transaction, and
dropping the old ``messages`` table would cascade into ``message_attempts``.

Revision ID: 0004_dispatch_worker
Revises: 0003
"""

import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_dispatch_worker"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KIND = sa.Enum("campaign", "notice", name="messagekind", native_enum=False, length=20)
_NOT_NULL = re.compile(r'((?:^|[\s(,])"?campaign_id"?\s+CHAR\(32\))\s+NOT\s+NULL', re.IGNORECASE)
_NULLABLE = re.compile(r'((?:^|[\s(,])"?campaign_id"?\s+CHAR\(32\))(?=\s*,)', re.IGNORECASE)


def _rewrite_sqlite_table(pattern: re.Pattern[str], replacement: str) -> None:
    """Rewrite the ``messages`` CREATE statement in SQLite's schema table (see above)."""
    bind = op.get_bind()
    sql = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'messages'"
    ).scalar_one()
    rewritten, count = pattern.subn(replacement, sql, count=1)
    if count != 1:
        raise RuntimeError("messages.campaign_id is not declared as this migration expects")
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar_one()
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    bind.exec_driver_sql(
        "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = 'messages'",
        (rewritten,),
    )
    bind.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    bind.exec_driver_sql("PRAGMA writable_schema = OFF")
    problems = bind.exec_driver_sql("PRAGMA integrity_check").scalars().all()
    if problems != ["ok"]:
        raise RuntimeError(f"SQLite integrity check failed: {problems}")


def upgrade() -> None:
    with op.batch_alter_table("messages", recreate="never") as batch:
        batch.add_column(
            sa.Column("kind", KIND, nullable=False, server_default=sa.text("'campaign'"))
        )
    if op.get_bind().dialect.name == "sqlite":
        _rewrite_sqlite_table(_NOT_NULL, r"\1")
    else:
        op.alter_column("messages", "campaign_id", existing_type=sa.Uuid(), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM messages WHERE campaign_id IS NULL")
    if op.get_bind().dialect.name == "sqlite":
        _rewrite_sqlite_table(_NULLABLE, r"\1 NOT NULL")
    else:
        op.alter_column("messages", "campaign_id", existing_type=sa.Uuid(), nullable=False)
    with op.batch_alter_table("messages", recreate="never") as batch:
        batch.drop_column("kind")
