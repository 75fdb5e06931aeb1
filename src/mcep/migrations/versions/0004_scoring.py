"""Scoring: the model registry (versions, champions, promotions), the scoring cursor, each
lead's state and score history, and advisor feedback.

Revision ID: 0004_scoring
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_scoring"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
AT = sa.DateTime(timezone=True)
FEEDBACK_LABEL = sa.Enum(
    "good_lead",
    "not_a_lead",
    "converted",
    "reset",
    name="feedbacklabel",
    native_enum=False,
    length=20,
)


def _version_fk(table: str, column: str, ondelete: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column],
        ["model_versions.id"],
        name=op.f(f"fk_{table}_{column}_model_versions"),
        ondelete=ondelete,
    )


def _prospect_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["prospect_id"],
        ["prospects.id"],
        name=op.f(f"fk_{table}_prospect_id_prospects"),
        ondelete="CASCADE",
    )


def _registry() -> None:
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("source", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("artifact", sa.LargeBinary(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("created_at", AT, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_versions")),
        sa.UniqueConstraint("name", "version", name=op.f("uq_model_versions_name")),
    )
    op.create_table(
        "model_champions",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.String(length=64), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("changed_at", AT, nullable=False),
        sa.Column("changed_by", sa.String(length=200), nullable=False),
        _version_fk("model_champions", "version_id", "RESTRICT"),
        sa.PrimaryKeyConstraint("name", "scope", name=op.f("pk_model_champions")),
    )
    op.create_table(
        "model_promotions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.String(length=64), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("promoted_at", AT, nullable=False),
        sa.Column("promoted_by", sa.String(length=200), nullable=False),
        sa.Column("rolled_back_at", AT, nullable=True),
        sa.Column("rolled_back_by", sa.String(length=200), nullable=True),
        _version_fk("model_promotions", "version_id", "RESTRICT"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_promotions")),
    )
    op.create_index("ix_model_promotions_scope", "model_promotions", ["name", "scope", "id"])
    op.create_table(
        "scoring_cursors",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("last_event_id", BIGINT, nullable=False),
        sa.Column("updated_at", AT, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_scoring_cursors")),
    )


def _leads() -> None:
    op.create_table(
        "lead_states",
        sa.Column("prospect_id", sa.Uuid(), nullable=False),
        sa.Column("pm_id", sa.Uuid(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("model_version_id", sa.Integer(), nullable=True),
        sa.Column("scored_at", AT, nullable=True),
        sa.Column("events_seen", sa.Integer(), nullable=False),
        sa.Column("last_event_id", BIGINT, nullable=False),
        sa.Column("qualified_at", AT, nullable=True),
        sa.Column("qualified_score", sa.Float(), nullable=True),
        sa.Column("updated_at", AT, nullable=False),
        _version_fk("lead_states", "model_version_id", "SET NULL"),
        _prospect_fk("lead_states"),
        sa.PrimaryKeyConstraint("prospect_id", name=op.f("pk_lead_states")),
    )
    op.create_index("ix_lead_states_pm_score", "lead_states", ["pm_id", "score"])
    op.create_table(
        "lead_scores",
        sa.Column("id", BIGINT, autoincrement=True, nullable=False),
        sa.Column("prospect_id", sa.Uuid(), nullable=False),
        sa.Column("pm_id", sa.Uuid(), nullable=False),
        sa.Column("at", AT, nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=True),
        sa.Column("event_id", BIGINT, nullable=True),
        _version_fk("lead_scores", "model_version_id", "SET NULL"),
        _prospect_fk("lead_scores"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lead_scores")),
    )
    op.create_index("ix_lead_scores_prospect_at", "lead_scores", ["prospect_id", "at"])
    op.create_table(
        "lead_feedback",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("prospect_id", sa.Uuid(), nullable=False),
        sa.Column("pm_id", sa.Uuid(), nullable=False),
        sa.Column("label", FEEDBACK_LABEL, nullable=False),
        sa.Column("note_enc", sa.LargeBinary(), nullable=True),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("at", AT, nullable=False),
        _prospect_fk("lead_feedback"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lead_feedback")),
    )
    op.create_index(op.f("ix_lead_feedback_pm_id"), "lead_feedback", ["pm_id"])
    op.create_index("ix_lead_feedback_prospect_at", "lead_feedback", ["prospect_id", "at"])


def upgrade() -> None:
    _registry()
    _leads()


def downgrade() -> None:
    op.drop_index("ix_lead_feedback_prospect_at", table_name="lead_feedback")
    op.drop_index(op.f("ix_lead_feedback_pm_id"), table_name="lead_feedback")
    op.drop_table("lead_feedback")
    op.drop_index("ix_lead_scores_prospect_at", table_name="lead_scores")
    op.drop_table("lead_scores")
    op.drop_index("ix_lead_states_pm_score", table_name="lead_states")
    op.drop_table("lead_states")
    op.drop_table("scoring_cursors")
    op.drop_index("ix_model_promotions_scope", table_name="model_promotions")
    op.drop_table("model_promotions")
    op.drop_table("model_champions")
    op.drop_table("model_versions")
