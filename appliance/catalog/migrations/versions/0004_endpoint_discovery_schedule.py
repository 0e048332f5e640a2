"""endpoint discovery schedule

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 10:45:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing endpoints get the default interval, so they are discovered on a schedule too.
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("discovery_interval", sa.Integer(), server_default="3600", nullable=False)
        )
        batch_op.add_column(
            sa.Column("next_discovery_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("last_discovery_error", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.drop_column("last_discovery_error")
        batch_op.drop_column("next_discovery_at")
        batch_op.drop_column("discovery_interval")
