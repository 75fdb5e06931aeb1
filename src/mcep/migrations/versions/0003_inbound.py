"""Inbound: de-duplication of provider events, and messages people send us.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHANNEL = sa.Enum(
    "whatsapp", "telegram", "signal", "imessage", name="channel", native_enum=False, length=20
)


def upgrade() -> None:
    op.create_table(
        "provider_events_seen",
        sa.Column("channel", CHANNEL, nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("channel", "event_id", name=op.f("pk_provider_events_seen")),
    )
    op.create_table(
        "inbound_messages",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("channel", CHANNEL, nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("device_id", sa.Uuid(), nullable=True),
        sa.Column("prospect_id", sa.Uuid(), nullable=True),
        sa.Column("pm_id", sa.Uuid(), nullable=True),
        sa.Column("in_reply_to", sa.Uuid(), nullable=True),
        sa.Column("text_enc", sa.LargeBinary(), nullable=True),
        sa.Column("text_sha256", sa.String(length=64), nullable=False),
        sa.Column("is_stop", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_messages")),
        sa.UniqueConstraint("channel", "event_id", name=op.f("uq_inbound_messages_channel")),
    )
    op.create_index("ix_inbound_messages_prospect_at", "inbound_messages", ["prospect_id", "at"])
    op.create_index("ix_inbound_messages_pm_at", "inbound_messages", ["pm_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_inbound_messages_pm_at", table_name="inbound_messages")
    op.drop_index("ix_inbound_messages_prospect_at", table_name="inbound_messages")
    op.drop_table("inbound_messages")
    op.drop_table("provider_events_seen")
