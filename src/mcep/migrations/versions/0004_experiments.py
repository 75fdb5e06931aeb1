"""Experiments: experiments on campaigns, their arms, and each prospect's assignment.

Revision ID: 0004_experiments
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_experiments"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AT = sa.DateTime(timezone=True)


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, length=20)


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("pm_id", sa.Uuid(), nullable=False),
        sa.Column("campaign_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("mode", _enum("mode", "fixed", "test_then_send", "thompson"), nullable=False),
        sa.Column(
            "status",
            _enum("experimentstatus", "draft", "running", "completed", "cancelled"),
            nullable=False,
        ),
        sa.Column("control", sa.String(length=64), nullable=False),
        sa.Column(
            "metric",
            _enum("metric", "reply_rate", "read_rate", "opt_out_rate", "qualified_rate"),
            nullable=False,
        ),
        sa.Column("max_opt_out_rate", sa.Double(), nullable=True),
        sa.Column("alpha", sa.Double(), nullable=False),
        sa.Column("holdout", sa.Double(), nullable=False),
        sa.Column("test_fraction", sa.Double(), nullable=True),
        sa.Column("deadline", AT, nullable=True),
        sa.Column("deadline_hours", sa.Double(), nullable=True),
        sa.Column("fallback", _enum("fallback", "control", "best"), nullable=False),
        sa.Column("min_share", sa.Double(), nullable=True),
        sa.Column("batch_minutes", sa.Integer(), nullable=True),
        sa.Column("launched_at", AT, nullable=True),
        sa.Column("decided_at", AT, nullable=True),
        sa.Column("winner", sa.String(length=64), nullable=True),
        sa.Column("decision", sa.JSON(), nullable=False),
        sa.Column("updated_at", AT, nullable=False),
        sa.Column("created_at", AT, nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_experiments_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["pm_id"],
            ["portfolio_managers.id"],
            name=op.f("fk_experiments_pm_id_portfolio_managers"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiments")),
        sa.UniqueConstraint("campaign_id", name=op.f("uq_experiments_campaign_id")),
    )
    op.create_index(op.f("ix_experiments_pm_id"), "experiments", ["pm_id"])
    op.create_index(op.f("ix_experiments_status"), "experiments", ["status"])

    op.create_table(
        "experiment_arms",
        sa.Column("experiment_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("template_id", sa.Uuid(), nullable=False),
        sa.Column("weight", sa.Double(), nullable=False),
        sa.Column("send_offset_minutes", sa.Integer(), nullable=False),
        sa.Column("channel_order", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_experiment_arms_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["templates.id"],
            name=op.f("fk_experiment_arms_template_id_templates"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("experiment_id", "name", name=op.f("pk_experiment_arms")),
    )
    op.create_index(op.f("ix_experiment_arms_template_id"), "experiment_arms", ["template_id"])

    op.create_table(
        "experiment_assignments",
        sa.Column("experiment_id", sa.Uuid(), nullable=False),
        sa.Column("prospect_id", sa.Uuid(), nullable=False),
        sa.Column("cohort", _enum("cohort", "test", "holdout", "remainder"), nullable=False),
        sa.Column("arm", sa.String(length=64), nullable=True),
        sa.Column("assigned_at", AT, nullable=False),
        sa.Column("released_at", AT, nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_experiment_assignments_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["prospect_id"],
            ["prospects.id"],
            name=op.f("fk_experiment_assignments_prospect_id_prospects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "experiment_id", "prospect_id", name=op.f("pk_experiment_assignments")
        ),
    )
    op.create_index(
        "ix_experiment_assignments_group",
        "experiment_assignments",
        ["experiment_id", "cohort", "arm"],
    )
    op.create_index(
        op.f("ix_experiment_assignments_prospect_id"), "experiment_assignments", ["prospect_id"]
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_experiment_assignments_prospect_id"), table_name="experiment_assignments"
    )
    op.drop_index("ix_experiment_assignments_group", table_name="experiment_assignments")
    op.drop_table("experiment_assignments")
    op.drop_index(op.f("ix_experiment_arms_template_id"), table_name="experiment_arms")
    op.drop_table("experiment_arms")
    op.drop_index(op.f("ix_experiments_status"), table_name="experiments")
    op.drop_index(op.f("ix_experiments_pm_id"), table_name="experiments")
    op.drop_table("experiments")
