"""Dispatch: sender devices, engagement profiles, templates, campaigns, the message outbox,
send attempts and the event log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 00:48:02.179053
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "platform",
            sa.Enum(
                "whatsapp",
                "telegram",
                "signal",
                "imessage",
                name="platform",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("address", sa.String(length=200), nullable=False),
        sa.Column("pool", sa.String(length=64), nullable=False),
        sa.Column("base_url", sa.String(length=500), nullable=False),
        sa.Column("token_key", sa.LargeBinary(), nullable=False),
        sa.Column("token_enc", sa.LargeBinary(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "active",
                "degraded",
                "quarantined",
                "offline",
                name="devicestatus",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("daily_quota", sa.Integer(), nullable=True),
        sa.Column("rate_per_minute", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
        sa.UniqueConstraint("platform", "address", name=op.f("uq_devices_platform")),
    )
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_devices_platform"), ["platform"], unique=False)

    op.create_table(
        "events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("campaign_id", sa.Uuid(), nullable=True),
        sa.Column("variant", sa.String(length=64), nullable=True),
        sa.Column(
            "channel",
            sa.Enum(
                "whatsapp",
                "telegram",
                "signal",
                "imessage",
                name="channel",
                native_enum=False,
                length=20,
            ),
            nullable=True,
        ),
        sa.Column("device_id", sa.Uuid(), nullable=True),
        sa.Column("prospect_id", sa.Uuid(), nullable=True),
        sa.Column("pm_id", sa.Uuid(), nullable=True),
        sa.Column("message_id", sa.Uuid(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_campaign_kind", ["campaign_id", "kind"], unique=False)
        batch_op.create_index("ix_events_message", ["message_id"], unique=False)
        batch_op.create_index("ix_events_pm_at", ["pm_id", "at"], unique=False)
        batch_op.create_index("ix_events_prospect_at", ["prospect_id", "at"], unique=False)

    op.create_table(
        "engagement_profiles",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("pm_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("lead_threshold", sa.Integer(), nullable=False),
        sa.Column("channel_order", sa.JSON(), nullable=False),
        sa.Column("window_start", sa.Time(), nullable=False),
        sa.Column("window_end", sa.Time(), nullable=False),
        sa.Column("quiet_start", sa.Time(), nullable=True),
        sa.Column("quiet_end", sa.Time(), nullable=True),
        sa.Column("send_days", sa.JSON(), nullable=False),
        sa.Column("cap_per_day", sa.Integer(), nullable=False),
        sa.Column("cap_per_week", sa.Integer(), nullable=False),
        sa.Column("retry_delays", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "lead_threshold BETWEEN 50 AND 90",
            name=op.f("ck_engagement_profiles_lead_threshold_range"),
        ),
        sa.ForeignKeyConstraint(
            ["pm_id"],
            ["portfolio_managers.id"],
            name=op.f("fk_engagement_profiles_pm_id_portfolio_managers"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_engagement_profiles")),
        sa.UniqueConstraint("pm_id", "name", name=op.f("uq_engagement_profiles_pm_id")),
    )
    with op.batch_alter_table("engagement_profiles", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_engagement_profiles_pm_id"), ["pm_id"], unique=False)

    op.create_table(
        "templates",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("pm_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("wa_template_name", sa.String(length=512), nullable=True),
        sa.Column("wa_language", sa.String(length=16), nullable=True),
        sa.Column("wa_parameters", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["pm_id"],
            ["portfolio_managers.id"],
            name=op.f("fk_templates_pm_id_portfolio_managers"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_templates")),
        sa.UniqueConstraint("pm_id", "name", name=op.f("uq_templates_pm_id")),
    )
    with op.batch_alter_table("templates", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_templates_pm_id"), ["pm_id"], unique=False)

    op.create_table(
        "campaigns",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("pm_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("profile_id", sa.Uuid(), nullable=True),
        sa.Column("audience", sa.JSON(), nullable=False),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "draft",
                "scheduled",
                "running",
                "paused",
                "cancelled",
                "completed",
                name="campaignstatus",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("launched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("launch_result", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["pm_id"],
            ["portfolio_managers.id"],
            name=op.f("fk_campaigns_pm_id_portfolio_managers"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["profile_id"],
            ["engagement_profiles.id"],
            name=op.f("fk_campaigns_profile_id_engagement_profiles"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
    )
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_campaigns_pm_id"), ["pm_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_campaigns_profile_id"), ["profile_id"], unique=False)

    op.create_table(
        "campaign_variants",
        sa.Column("campaign_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("template_id", sa.Uuid(), nullable=False),
        sa.Column("weight", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_campaign_variants_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["templates.id"],
            name=op.f("fk_campaign_variants_template_id_templates"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("campaign_id", "name", name=op.f("pk_campaign_variants")),
    )
    with op.batch_alter_table("campaign_variants", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_campaign_variants_template_id"), ["template_id"], unique=False
        )

    op.create_table(
        "messages",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("campaign_id", sa.Uuid(), nullable=False),
        sa.Column("pm_id", sa.Uuid(), nullable=False),
        sa.Column("prospect_id", sa.Uuid(), nullable=False),
        sa.Column("variant", sa.String(length=64), nullable=False),
        sa.Column(
            "channel",
            sa.Enum(
                "whatsapp",
                "telegram",
                "signal",
                "imessage",
                name="channel",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("device_id", sa.Uuid(), nullable=True),
        sa.Column("content_enc", sa.LargeBinary(), nullable=True),
        sa.Column("body_sha256", sa.String(length=64), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "queued",
                "sending",
                "sent",
                "delivered",
                "read",
                "retry_scheduled",
                "failed",
                "dead",
                "cancelled",
                name="messagestate",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(length=100), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("provider_message_id", sa.String(length=200), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_messages_campaign_id_campaigns"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_messages_device_id_devices"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["pm_id"],
            ["portfolio_managers.id"],
            name=op.f("fk_messages_pm_id_portfolio_managers"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["prospect_id"],
            ["prospects.id"],
            name=op.f("fk_messages_prospect_id_prospects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
        sa.UniqueConstraint("campaign_id", "prospect_id", name=op.f("uq_messages_campaign_id")),
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index(
            "ix_messages_device_recent", ["device_id", "created_at"], unique=False
        )
        batch_op.create_index("ix_messages_due", ["state", "next_attempt_at"], unique=False)
        batch_op.create_index("ix_messages_lease", ["state", "lease_expires_at"], unique=False)
        batch_op.create_index("ix_messages_pm_recent", ["pm_id", "created_at"], unique=False)
        batch_op.create_index(
            "ix_messages_prospect_recent", ["prospect_id", "created_at"], unique=False
        )
        batch_op.create_index(
            "ix_messages_provider_id", ["channel", "provider_message_id"], unique=False
        )

    op.create_table(
        "message_attempts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("message_id", sa.Uuid(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Uuid(), nullable=True),
        sa.Column("lease_owner", sa.String(length=100), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("code", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("retry_after", sa.Double(), nullable=True),
        sa.Column("provider_message_id", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_message_attempts_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_attempts")),
        sa.UniqueConstraint("message_id", "attempt", name=op.f("uq_message_attempts_message_id")),
    )


def downgrade() -> None:
    op.drop_table("message_attempts")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_provider_id")
        batch_op.drop_index("ix_messages_prospect_recent")
        batch_op.drop_index("ix_messages_pm_recent")
        batch_op.drop_index("ix_messages_lease")
        batch_op.drop_index("ix_messages_due")
        batch_op.drop_index("ix_messages_device_recent")

    op.drop_table("messages")
    with op.batch_alter_table("campaign_variants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_campaign_variants_template_id"))

    op.drop_table("campaign_variants")
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_campaigns_profile_id"))
        batch_op.drop_index(batch_op.f("ix_campaigns_pm_id"))

    op.drop_table("campaigns")
    with op.batch_alter_table("templates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_templates_pm_id"))

    op.drop_table("templates")
    with op.batch_alter_table("engagement_profiles", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_engagement_profiles_pm_id"))

    op.drop_table("engagement_profiles")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_prospect_at")
        batch_op.drop_index("ix_events_pm_at")
        batch_op.drop_index("ix_events_message")
        batch_op.drop_index("ix_events_campaign_kind")

    op.drop_table("events")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_devices_platform"))

    op.drop_table("devices")
