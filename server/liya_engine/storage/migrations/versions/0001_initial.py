"""Initial schema: tenant configs, provider credentials, audit, master key salts.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigIntId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "tenant_configs",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("strategy", sa.String(32), nullable=False),
        sa.Column("overrides", sa.JSON(), nullable=False),
        sa.Column("cost_limit_usd", sa.Float(), nullable=True),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "provider_credentials",
        sa.Column(
            "tenant_id",
            sa.String(128),
            sa.ForeignKey("tenant_configs.tenant_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("provider", sa.String(16), primary_key=True),
        sa.Column("api_key_ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("master_key_id", sa.String(64), nullable=True),
        sa.Column("api_key_preview", sa.String(32), nullable=False),
        sa.Column("default_model", sa.String(128), nullable=False),
        sa.Column("endpoint", sa.String(512), nullable=False),
        sa.Column("deployment_name", sa.String(64), nullable=False),
        sa.Column("api_version", sa.String(32), nullable=False),
    )
    op.create_index(
        "ix_provider_credentials_master_key_id", "provider_credentials", ["master_key_id"]
    )
    op.create_table(
        "audit_entries",
        sa.Column("id", BigIntId, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_paths", sa.JSON(), nullable=False),
        sa.Column("mode_before", sa.String(16), nullable=False),
        sa.Column("mode_after", sa.String(16), nullable=False),
    )
    op.create_index("ix_audit_entries_tenant_id_id", "audit_entries", ["tenant_id", "id"])
    op.create_table(
        "master_key_salts",
        sa.Column("key_id", sa.String(64), primary_key=True),
        sa.Column("salt", sa.LargeBinary(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("master_key_salts")
    op.drop_index("ix_audit_entries_tenant_id_id", "audit_entries")
    op.drop_table("audit_entries")
    op.drop_index("ix_provider_credentials_master_key_id", "provider_credentials")
    op.drop_table("provider_credentials")
    op.drop_table("tenant_configs")
