"""The database schema. Alembic migrations under ``migrations/`` create it;
change both together."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only autoincrements INTEGER PRIMARY KEY.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class TenantConfigRow(Base):
    __tablename__ = "tenant_configs"

    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    mode: Mapped[str] = mapped_column(String(16), nullable=False)
    strategy: Mapped[str] = mapped_column(String(32), nullable=False, default="")
    overrides: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    cost_limit_usd: Mapped[float | None] = mapped_column(Float, nullable=True)
    # model -> {"input_usd_per_million": x, "output_usd_per_million": y}
    prices: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    monthly_budget_usd: Mapped[float | None] = mapped_column(Float, nullable=True)
    update_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class ProviderCredentialRow(Base):
    __tablename__ = "provider_credentials"
    __table_args__ = (Index("ix_provider_credentials_master_key_id", "master_key_id"),)

    tenant_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("tenant_configs.tenant_id", ondelete="CASCADE"), primary_key=True
    )
    provider: Mapped[str] = mapped_column(String(16), primary_key=True)
    api_key_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # Which master key wrapped the ciphertext, so rewrap can find old ones fast.
    master_key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    api_key_preview: Mapped[str] = mapped_column(String(32), nullable=False, default="")
    default_model: Mapped[str] = mapped_column(String(128), nullable=False, default="")
    endpoint: Mapped[str] = mapped_column(String(512), nullable=False, default="")
    deployment_name: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    api_version: Mapped[str] = mapped_column(String(32), nullable=False, default="")
    model: Mapped[str] = mapped_column(String(128), nullable=False, default="")


class DeploymentModelRow(Base):
    """The model an Azure deployment last reported running, per tenant: what
    prices its calls when the tenant did not say (``provider_config.azure.model``).
    Learned from answers, not configuration: not versioned, not audited."""

    __tablename__ = "deployment_models"

    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    deployment: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(128), nullable=False)
    update_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class AuditEntryRow(Base):
    __tablename__ = "audit_entries"
    __table_args__ = (Index("ix_audit_entries_tenant_id_id", "tenant_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(128), nullable=False)
    actor: Mapped[str] = mapped_column(String(256), nullable=False)
    request_id: Mapped[str] = mapped_column(String(64), nullable=False)
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    changed_paths: Mapped[list] = mapped_column(JSON, nullable=False)
    mode_before: Mapped[str] = mapped_column(String(16), nullable=False)
    mode_after: Mapped[str] = mapped_column(String(16), nullable=False)


class MasterKeySaltRow(Base):
    """The HKDF salt stored with each master key id (not secret, but fixed)."""

    __tablename__ = "master_key_salts"

    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    salt: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class UsageDailyRow(Base):
    """The usage ledger: one row per tenant, UTC day, provider, model, intent
    and mode, with the running totals of that day. Replicas add their deltas
    with one upsert per row per flush (``storage.usage``)."""

    __tablename__ = "usage_daily"

    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    usage_date: Mapped[date] = mapped_column(Date, primary_key=True)
    provider: Mapped[str] = mapped_column(String(16), primary_key=True)
    model: Mapped[str] = mapped_column(String(128), primary_key=True)
    intent: Mapped[str] = mapped_column(String(64), primary_key=True)
    mode: Mapped[str] = mapped_column(String(16), primary_key=True)
    calls: Mapped[int] = mapped_column(BigInteger, nullable=False)
    failed_calls: Mapped[int] = mapped_column(BigInteger, nullable=False)
    input_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False)
    output_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False)
    cost_usd: Mapped[float] = mapped_column(Float, nullable=False)


class ProviderHealthRow(Base):
    """The health of a tenant's provider credentials (``config.health``).

    ``credentials_version`` is the config version at which the credentials it
    describes were stored: an outcome of a call made with an older config
    never lands here, and a row newer than a config is not shown with it.
    """

    __tablename__ = "provider_health"

    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    provider: Mapped[str] = mapped_column(String(16), primary_key=True)
    credentials_version: Mapped[int] = mapped_column(Integer, nullable=False)
    key_set_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_success_time: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    last_failure_time: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    last_failure_reason: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    last_failure_message: Mapped[str] = mapped_column(String(400), nullable=False, default="")
