"""scheduling: job concurrency and retry back-off, linked retries, the appliance's
time zone and other settings, notification targets

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 11:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing jobs get the new defaults: one run at a time, retries after 5 min doubling.
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("max_concurrent_runs", sa.Integer(), server_default="1", nullable=True)
        )
        batch_op.add_column(
            sa.Column("retry_delay", sa.Integer(), server_default="300", nullable=False)
        )
        batch_op.add_column(
            sa.Column("retry_delay_max", sa.Integer(), server_default="14400", nullable=False)
        )
    with op.batch_alter_table("schedules", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "zone_from_appliance", sa.Boolean(), server_default=sa.false(), nullable=False
            )
        )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("retry_of_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("waiting_for", sa.Text(), nullable=True))
        batch_op.create_foreign_key(
            "fk_runs_retry_of_id_runs", "runs", ["retry_of_id"], ["id"], ondelete="SET NULL"
        )
    op.create_table(
        "appliance_settings",
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "notification_targets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("secret_name", sa.String(length=200), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("notification_targets")
    op.drop_table("appliance_settings")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_constraint("fk_runs_retry_of_id_runs", type_="foreignkey")
        batch_op.drop_column("waiting_for")
        batch_op.drop_column("retry_of_id")
    with op.batch_alter_table("schedules", schema=None) as batch_op:
        batch_op.drop_column("zone_from_appliance")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("retry_delay_max")
        batch_op.drop_column("retry_delay")
        batch_op.drop_column("max_concurrent_runs")
