"""consistency groups: member jobs, group runs and each member's mark and point

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 12:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consistency_groups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("freeze_window", sa.Float(), nullable=False),
        sa.Column("schedule", sa.String(length=200), nullable=True),
        sa.Column("timezone", sa.String(length=100), nullable=False),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "consistency_group_members",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["consistency_groups.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("group_id", "job_id"),
    )
    op.create_index(
        "ix_consistency_group_members_group_id", "consistency_group_members", ["group_id"]
    )
    op.create_table(
        "group_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("trigger", sa.String(length=30), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("freeze_seconds", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["group_id"], ["consistency_groups.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_group_runs_group_id", "group_runs", ["group_id"])
    op.create_table(
        "group_run_members",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("group_run_id", sa.Integer(), nullable=False),
        sa.Column("job_name", sa.String(length=200), nullable=False),
        sa.Column("asset_name", sa.String(length=500), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("recovery_point_id", sa.String(length=64), nullable=True),
        sa.Column("mark", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["group_run_id"], ["group_runs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_group_run_members_group_run_id", "group_run_members", ["group_run_id"])


def downgrade() -> None:
    op.drop_index("ix_group_run_members_group_run_id", table_name="group_run_members")
    op.drop_table("group_run_members")
    op.drop_index("ix_group_runs_group_id", table_name="group_runs")
    op.drop_table("group_runs")
    op.drop_index("ix_consistency_group_members_group_id", table_name="consistency_group_members")
    op.drop_table("consistency_group_members")
    op.drop_table("consistency_groups")
