"""Key health: one row per tenant and provider, tied to the credentials it describes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # No rows for credentials stored before: they show as `unknown`, with no
    # key_set_time, until a call records an outcome.
    op.create_table(
        "provider_health",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("provider", sa.String(16), primary_key=True),
        sa.Column("credentials_version", sa.Integer(), nullable=False),
        sa.Column("key_set_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_success_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_failure_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_failure_reason", sa.String(64), nullable=False),
        sa.Column("last_failure_message", sa.String(400), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("provider_health")
