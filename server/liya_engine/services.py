"""Building a server process's services from settings: the database handed
to the domain as the ports it owns (``config.ports.ConfigStore`` for the
config service, ``SaltStore`` for the keyring, ``usage.ports.UsageStore`` for
the ledger, ``config.health.HealthStore`` for key health), the provider
adapters, and the domain services over them. The domain never imports storage
itself; ``app`` serves what is built here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from liya_engine import redact
from liya_engine.bootstrap import build_cipher
from liya_engine.config.endpoints import EndpointPolicy
from liya_engine.config.health import HealthStore
from liya_engine.config.health_recorder import HealthRecorder
from liya_engine.config.health_view import HealthView
from liya_engine.config.ports import ConfigStore, SaltStore
from liya_engine.config.service import ConfigService
from liya_engine.crypto.cipher import KeyCipher
from liya_engine.identity import TokenVerifier
from liya_engine.inference.learned import LearnedModels
from liya_engine.inference.service import InferenceService
from liya_engine.inference.tenants import TenantCache
from liya_engine.metrics import Metrics
from liya_engine.overload import upstream_pool
from liya_engine.providers.registry import build_adapters
from liya_engine.routing.catalog import Catalog
from liya_engine.secret import Secret
from liya_engine.settings import Settings
from liya_engine.storage.database import Database
from liya_engine.storage.deployment_models import DeploymentModelTable
from liya_engine.usage.ledger import NoLedger, UsageLedger
from liya_engine.usage.listing import UsageReports
from liya_engine.usage.ports import UsageStore

log = logging.getLogger("liya_engine")


@dataclass
class Services:
    """Everything a server process holds, built once from settings."""

    settings: Settings
    db: Database
    metrics: Metrics
    cipher: KeyCipher
    catalog: Catalog
    configs: ConfigService
    tenants: TenantCache
    inference: InferenceService
    verifier: TokenVerifier
    ledger: UsageLedger | NoLedger
    usage: UsageReports
    health: HealthRecorder
    health_view: HealthView

    async def aclose(self) -> None:
        await self.ledger.close()  # calls have drained: write what they added
        for adapter in self.inference.adapters.values():
            await adapter.aclose()
        if self.inference.learned is not None:
            await self.inference.learned.close()
        await self.db.dispose()
        redact.forget(managed_keys(self.settings))


def managed_keys(settings: Settings) -> list[Secret | None]:
    """The platform's keys, scrubbed from every log line while a server runs."""
    managed = settings.managed
    return [
        managed.openai_api_key,
        managed.anthropic_api_key,
        managed.azure and managed.azure.api_key,
    ]


async def build_services(settings: Settings, *, migrate: bool = True) -> Services:
    """Migrate (or check) the database and build the services."""
    settings.primary_master_key  # noqa: B018 - fail before touching the database
    # The platform's keys are scrubbed from every log line, whatever logs them.
    redact.remember(managed_keys(settings))
    verifier = TokenVerifier(settings)
    catalog = Catalog.load(settings.catalog_file)
    db = Database(settings.database_url)
    try:
        if migrate:
            revision = await db.migrate()
            log.info("database schema at revision %s (migrated on start)", revision)
        salts: SaltStore = db
        cipher = await build_cipher(settings, salts)
    except BaseException:
        await db.dispose()
        raise
    metrics = Metrics()
    store: ConfigStore = db
    configs = ConfigService(store, cipher, catalog, settings)
    tenants = TenantCache(
        configs,
        cipher,
        metrics,
        max_entries=settings.config_cache_size,
        ttl_seconds=settings.config_cache_ttl_seconds,
    )
    adapters = build_adapters(
        azure_endpoints=EndpointPolicy.from_settings(settings), pool=upstream_pool(settings)
    )
    learned = LearnedModels(DeploymentModelTable(lambda: db.engine))
    usage_store: UsageStore = db
    ledger = (
        UsageLedger(
            usage_store,
            metrics,
            flush_seconds=settings.usage_flush_seconds,
            max_keys=settings.usage_max_pending_keys,
        )
        if settings.usage_ledger
        else NoLedger()
    )
    health_store: HealthStore = db
    health = HealthRecorder(health_store, metrics.key_health_transition)
    health_view = HealthView(health_store, health)
    configs.on_change(health_view.invalidate)
    inference = InferenceService(
        tenants,
        adapters,
        catalog,
        settings,
        metrics,
        learned=learned,
        usage=ledger,
        health=health,
    )
    configs.probe = inference.verify_credentials
    reports = UsageReports(usage_store, ledger, tenants)
    return Services(
        settings=settings,
        db=db,
        metrics=metrics,
        cipher=cipher,
        catalog=catalog,
        configs=configs,
        tenants=tenants,
        inference=inference,
        verifier=verifier,
        ledger=ledger,
        usage=reports,
        health=health,
        health_view=health_view,
    )
