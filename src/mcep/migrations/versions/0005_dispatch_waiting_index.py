"""Dispatch: a partial index of the waiting messages, in the order the worker claims them.

With it a claim walks the due rows oldest first and stops after one batch, instead of
sorting every waiting row of the outbox on each claim. It replaces ``ix_messages_due``, which
only the claim used and which every state change had to update.

Revision ID: 0005_dispatch_waiting_index
Revises: 0004_dispatch_worker
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_dispatch_waiting_index"
down_revision: str | None = "0004_dispatch_worker"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WAITING = sa.text("state IN ('queued', 'retry_scheduled')")


def upgrade() -> None:
    op.drop_index("ix_messages_due", table_name="messages")
    op.create_index(
        "ix_messages_waiting",
        "messages",
        ["next_attempt_at", "id"],
        postgresql_where=WAITING,
        sqlite_where=WAITING,
    )


def downgrade() -> None:
    op.drop_index("ix_messages_waiting", table_name="messages")
    op.create_index("ix_messages_due", "messages", ["state", "next_attempt_at"])
