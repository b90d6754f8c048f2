"""Prices: the tenant's model prices, the model of an Azure deployment, and
the models Azure deployments reported.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tenant_configs") as table:
        table.add_column(sa.Column("prices", sa.JSON(), nullable=False, server_default="{}"))
    with op.batch_alter_table("provider_credentials") as table:
        table.add_column(sa.Column("model", sa.String(128), nullable=False, server_default=""))
    op.create_table(
        "deployment_models",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("deployment", sa.String(64), primary_key=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("deployment_models")
    with op.batch_alter_table("provider_credentials") as table:
        table.drop_column("model")
    with op.batch_alter_table("tenant_configs") as table:
        table.drop_column("prices")
