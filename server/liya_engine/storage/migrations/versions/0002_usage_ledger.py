"""The usage ledger (daily rollup per tenant) and the monthly budget.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The primary key leads with tenant and date: every read is one tenant's
    # date range (ListDailyUsage, the month-to-date total).
    op.create_table(
        "usage_daily",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("usage_date", sa.Date(), primary_key=True),
        sa.Column("provider", sa.String(16), primary_key=True),
        sa.Column("model", sa.String(128), primary_key=True),
        sa.Column("intent", sa.String(64), primary_key=True),
        sa.Column("mode", sa.String(16), primary_key=True),
        sa.Column("calls", sa.BigInteger(), nullable=False),
        sa.Column("failed_calls", sa.BigInteger(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
    )
    with op.batch_alter_table("tenant_configs") as batch:
        batch.add_column(sa.Column("monthly_budget_usd", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tenant_configs") as batch:
        batch.drop_column("monthly_budget_usd")
    op.drop_table("usage_daily")
