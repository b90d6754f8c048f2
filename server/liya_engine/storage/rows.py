"""THE row mapper: the only place where rows become ``config.model`` objects
and ``config.model`` objects become column values.

Every read of a tenant's config, whichever path it takes (the SQLite fast
reader, a plain connection, a unit of work), runs ``READ_CONFIG`` and hands its
rows to ``config_from_rows``; every write takes its values from
``config_columns`` and ``provider_columns``. A provider setting is a column of
``provider_credentials`` with the name of its ``StoredProvider`` field, so a new
provider field needs its column and migration and nothing here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import Select, bindparam, select

from liya_engine.config.health import Outcome, ProviderHealth
from liya_engine.config.model import (
    AuditEntry,
    ModelPrice,
    ModelSettings,
    StoredProvider,
    TenantConfig,
)
from liya_engine.storage.tables import AuditEntryRow, ProviderCredentialRow, TenantConfigRow

# Columns of provider_credentials holding StoredProvider's fields, same names
# (fields marked ``stored: False``, such as a key not yet sealed, have none).
PROVIDER_COLUMNS: Final = tuple(
    f.name for f in fields(StoredProvider) if f.metadata.get("stored", True)
)


def utc(value: datetime | None) -> datetime | None:
    """``value`` as an aware UTC datetime: SQLite hands back naive ones, and
    everything stored is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def config_columns(config: TenantConfig) -> dict[str, object]:
    """The ``tenant_configs`` values of ``config``, all but the key column."""
    return {
        "version": config.version,
        "mode": config.mode,
        "strategy": config.model.strategy,
        "overrides": dict(config.model.overrides),
        "cost_limit_usd": config.model.cost_limit_usd_per_request,
        "prices": prices_column(config.model.prices),
        "monthly_budget_usd": config.model.monthly_budget_usd,
        "update_time": config.update_time,
    }


def prices_column(prices: dict[str, ModelPrice]) -> dict[str, dict[str, float]]:
    """The JSON of ``tenant_configs.prices``: both values of every price,
    0 included (a price of 0 is a price, not an absent one)."""
    return {
        model: {
            "input_usd_per_million": price.input_usd_per_million,
            "output_usd_per_million": price.output_usd_per_million,
        }
        for model, price in prices.items()
    }


def prices_from_column(raw: dict | None) -> dict[str, ModelPrice]:
    """The prices ``prices_column`` wrote."""
    return {
        model: ModelPrice(
            float(value["input_usd_per_million"]), float(value["output_usd_per_million"])
        )
        for model, value in (raw or {}).items()
    }


def provider_columns(stored: StoredProvider) -> dict[str, object]:
    """The ``provider_credentials`` values of one provider's settings, without
    the master key id (the repository knows it). A key not yet sealed is a
    bug of the caller: it would store a preview with no ciphertext."""
    if stored.pending_key is not None:
        raise ValueError("a provider key must be sealed before it is written")
    return {name: getattr(stored, name) for name in PROVIDER_COLUMNS}


def _read_config_query() -> Select:
    t, p = TenantConfigRow.__table__, ProviderCredentialRow.__table__
    return (
        select(
            t.c.version,
            t.c.mode,
            t.c.strategy,
            t.c.overrides,
            t.c.cost_limit_usd,
            t.c.prices,
            t.c.monthly_budget_usd,
            t.c.update_time,
            p.c.provider,
            *(p.c[name] for name in PROVIDER_COLUMNS),
        )
        .select_from(t.outerjoin(p, p.c.tenant_id == t.c.tenant_id))
        .where(t.c.tenant_id == bindparam("tenant_id"))
    )


# One joined query, built once: the read path of every cache miss. A row per
# provider (or one with a NULL provider), the config's columns on each.
READ_CONFIG: Final = _read_config_query()


def config_from_rows(tenant_id: str, rows: Sequence) -> TenantConfig | None:
    """The config that ``READ_CONFIG``'s rows for ``tenant_id`` describe, or
    None when there are none. Rows need only attribute access by column name."""
    if not rows:
        return None
    first = rows[0]
    providers = {
        r.provider: StoredProvider(**{name: getattr(r, name) for name in PROVIDER_COLUMNS})
        for r in rows
        if r.provider is not None
    }
    return TenantConfig(
        tenant_id=tenant_id,
        version=first.version,
        mode=first.mode,
        providers=providers,
        model=ModelSettings(
            strategy=first.strategy,
            overrides=dict(first.overrides or {}),
            cost_limit_usd_per_request=first.cost_limit_usd,
            prices=prices_from_column(first.prices),
            monthly_budget_usd=first.monthly_budget_usd,
        ),
        update_time=utc(first.update_time),
    )


def audit_entry_from_row(row: AuditEntryRow) -> AuditEntry:
    """The domain's view of one stored audit entry."""
    return AuditEntry(
        id=row.id,
        tenant_id=row.tenant_id,
        actor=row.actor,
        request_id=row.request_id,
        create_time=utc(row.create_time),
        changed_paths=tuple(row.changed_paths),
        mode_before=row.mode_before,
        mode_after=row.mode_after,
    )


def audit_row(
    *,
    tenant_id: str,
    actor: str,
    request_id: str,
    create_time: datetime,
    changed_paths: Sequence[str],
    mode_before: str,
    mode_after: str,
) -> AuditEntryRow:
    """The row that records one change."""
    return AuditEntryRow(
        tenant_id=tenant_id,
        actor=actor,
        request_id=request_id,
        create_time=create_time,
        changed_paths=list(changed_paths),
        mode_before=mode_before,
        mode_after=mode_after,
    )


def health_from_row(row) -> ProviderHealth:
    """The domain's view of one ``provider_health`` row (attribute access by
    column name)."""
    return ProviderHealth(
        credentials_version=row.credentials_version,
        key_set_time=utc(row.key_set_time),
        last_success_time=utc(row.last_success_time),
        last_failure_time=utc(row.last_failure_time),
        last_failure_reason=row.last_failure_reason,
        last_failure_message=row.last_failure_message,
    )


def health_columns(outcome: Outcome) -> dict[str, object]:
    """The ``provider_health`` values an outcome brings, for a record that
    does not exist yet: credentials stored before health was recorded
    (``credentials_version`` 0, no key_set_time)."""
    return {
        "tenant_id": outcome.tenant_id,
        "provider": outcome.provider,
        "credentials_version": 0,
        "key_set_time": None,
        "last_success_time": outcome.success_time,
        "last_failure_time": outcome.failure_time,
        "last_failure_reason": outcome.reason,
        "last_failure_message": outcome.message,
    }
