"""Planning a call: which provider, model, credentials, max_tokens, upstream
timeout, and whether the monthly budget lets it through.

No I/O of its own: it works on a tenant already read (``ResolvedTenant``; a
key is decrypted in memory on first use) and the service's settings.
"""

from __future__ import annotations

from dataclasses import dataclass

from liya_engine.config.endpoints import EndpointPolicy
from liya_engine.config.model import MODE_BYOK, MODE_MANAGED, TenantConfig
from liya_engine.errors import (
    DeadlineExceeded,
    FieldViolation,
    NotConfigured,
    ProviderModelNotFound,
    ProviderUnreachable,
)
from liya_engine.inference.cost import fit_cost
from liya_engine.inference.latency import LatencyTracker
from liya_engine.inference.ports import Credentials, ProviderRequest
from liya_engine.inference.tenants import ResolvedTenant
from liya_engine.inference.values import CompletionInput
from liya_engine.providers import facts
from liya_engine.routing.catalog import Catalog
from liya_engine.routing.prices import Price, azure_model, resolve
from liya_engine.routing.router import (
    available_providers,
    choose_model,
    is_claude,
    provider_for_model,
)
from liya_engine.settings import Settings
from liya_engine.usage.budget import check_budget

DEADLINE_MARGIN_SECONDS = 0.05
_ENDPOINT_FIELD = "provider_config.azure.endpoint"
_MAX_ENDPOINT_VERDICTS = 10_000


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything a provider call needs, decided before it is made."""

    creds: Credentials
    request: ProviderRequest
    price: Price | None  # None: unpriced
    mode: str
    caller_bound: bool  # the caller's deadline, not our own budget, limits the call
    tenant: ResolvedTenant | None = None  # None: a probe of credentials not stored
    # The name the call is priced as (for Azure, the model behind the deployment).
    priced_as: str = ""
    # Azure, with nothing but its answers to say what the deployment runs.
    learns: bool = False
    tenant_id: str = ""
    intent: str = ""  # the rollup intent of the usage ledger
    reserved_usd: float = 0.0  # the worst case held against the monthly budget
    # The config whose key health the outcome updates (its tenant and version);
    # None when it touches none (managed mode, a verify of credentials not
    # stored yet).
    health: TenantConfig | None = None


def managed_credentials(settings: Settings) -> dict[str, Credentials]:
    """The platform's own credentials for managed mode, by provider."""
    m = settings.managed
    out: dict[str, Credentials] = {}
    if m.azure is not None:
        out[facts.AZURE] = Credentials(
            "azure", m.azure.api_key, m.azure.endpoint, m.azure.api_version
        )
    if m.anthropic_api_key:
        out[facts.ANTHROPIC] = Credentials(
            "anthropic", m.anthropic_api_key, settings.anthropic_base_url
        )
    if m.openai_api_key:
        out[facts.OPENAI] = Credentials("openai", m.openai_api_key, settings.openai_base_url)
    return out


def _not_configured(mode: str) -> NotConfigured:
    if mode == MODE_BYOK:
        return NotConfigured(
            "byok mode but no provider key is set: set one with "
            "UpdateConfig, or switch provider_config.mode to managed",
            metadata={"mode": mode},
        )
    return NotConfigured(
        "managed mode is not available: the platform has no provider "
        "credentials configured (operator: set LIYA_MANAGED_*)",
        metadata={"mode": mode},
    )


class Planner:
    """Turns a validated call of a tenant into a ``Plan``."""

    def __init__(self, catalog: Catalog, settings: Settings, latency: LatencyTracker) -> None:
        self._catalog = catalog
        self._settings = settings
        self._latency = latency
        self._endpoints = EndpointPolicy.from_settings(settings)
        self._managed = managed_credentials(settings)
        self._endpoint_verdicts: dict[str, list[FieldViolation]] = {}
        self.managed_providers: tuple[str, ...] = tuple(self._managed)

    def plan(
        self,
        tenant: ResolvedTenant,
        call: CompletionInput,
        deadline: float | None,
        *,
        check_cost: bool = True,
        default_model_only: bool = False,
        spent_usd: float | None = None,
    ) -> Plan:
        """The plan of ``call``; raises the routing, cost, budget and deadline
        errors. ``spent_usd`` is the month-to-date cost when a budget is set."""
        cfg = tenant.config
        available = available_providers(cfg, self.managed_providers)
        if not available:
            raise _not_configured(cfg.mode)
        serving = available[0]
        model, chosen_by = choose_model(
            intent=call.intent,
            strategy="" if default_model_only else cfg.model.strategy,
            overrides={} if default_model_only else cfg.model.overrides,
            serving=serving,
            default_model=self._default_model(cfg, serving),
            catalog=self._catalog,
            latency_of=self._latency,
            prices=cfg.model.prices,
        )
        provider = provider_for_model(model, available)
        if provider is None:
            raise ProviderModelNotFound(
                f"no {'configured' if cfg.mode == MODE_BYOK else 'managed'} provider serves "
                f"model {model!r} (chosen by {chosen_by} for intent {call.intent}): configure "
                f"{'Anthropic' if is_claude(model) else 'OpenAI or Azure OpenAI'} "
                "or change the override",
                provider=serving,
                model=model,
            )
        creds = self._credentials(tenant, provider)
        # A model chosen for another provider (e.g. a Claude override while Azure
        # serves) keeps its name; Azure treats the model name as the deployment.
        priced_as, learns = self.priced_as(tenant, provider, model)
        price = resolve(priced_as, cfg.model.prices, self._catalog)
        max_tokens = call.max_tokens
        if check_cost:
            max_tokens = fit_cost(
                cfg.model.cost_limit_usd_per_request,
                price,
                model,
                call,
                provider,
                default_max_tokens=self._catalog.default_max_output_tokens,
                priced_as=priced_as,
            )
        elif max_tokens is None:
            max_tokens = self._catalog.default_max_output_tokens
        reserved = 0.0
        budget = cfg.model.monthly_budget_usd
        if budget is not None and spent_usd is not None:  # after the cost limit, which wins
            reserved = check_budget(
                budget, spent_usd, price, call.messages, max_tokens, model=model, provider=provider
            )
        timeout, caller_bound = self.budget(deadline)
        request = ProviderRequest(
            model=model,
            messages=call.messages,
            max_tokens=max_tokens,
            timeout=timeout,
            temperature=call.temperature,
        )
        return Plan(
            creds,
            request,
            price,
            cfg.mode,
            caller_bound,
            tenant,
            priced_as,
            learns,
            cfg.tenant_id,
            call.intent,
            reserved,
            cfg if cfg.mode == MODE_BYOK else None,
        )

    def needs_learned(self, tenant: ResolvedTenant) -> bool:
        """Whether one of the tenant's Azure deployments (its default one, or
        one an override names, when Azure can serve them) is priced by nothing
        but what Azure reported, so that must be read."""
        cfg = tenant.config
        if facts.AZURE not in available_providers(cfg, self.managed_providers):
            return False
        names = {self._default_model(cfg, facts.AZURE), *cfg.model.overrides.values()}
        return any(
            self.priced_as(tenant, facts.AZURE, name)[1] for name in names if not is_claude(name)
        )

    def settle(self, plan: Plan, served_model: str) -> Price | None:
        """The price of a call once answered: the plan's, except for a
        deployment only Azure's answers price, where this answer's model wins."""
        if plan.learns and plan.tenant and served_model and served_model != plan.request.model:
            price = resolve(served_model, plan.tenant.config.model.prices, self._catalog)
            if price is not None:
                return price
        return plan.price

    def priced_as(self, tenant: ResolvedTenant, provider: str, model: str) -> tuple[str, bool]:
        """The name a call to ``model`` on ``provider`` is priced as, and
        whether only Azure's answers can say what the deployment runs."""
        if provider != facts.AZURE:
            return model, False
        cfg = tenant.config
        configured = cfg.provider(facts.AZURE).model if cfg.mode == MODE_BYOK else ""
        prices = cfg.model.prices
        learns = not configured and resolve(model, prices, self._catalog) is None
        learned = tenant.learned.get(model) if learns and tenant.learned else None
        return azure_model(model, configured, learned, prices, self._catalog), learns

    def _default_model(self, cfg: TenantConfig, serving: str) -> str:
        if cfg.mode == MODE_MANAGED:
            azure = self._settings.managed.azure
            if serving == facts.AZURE and azure:
                return azure.deployment
            return self._catalog.default_models.get(serving, "")
        p = cfg.provider(serving)
        named = p.deployment_name if serving == facts.AZURE else p.default_model
        return named or self._catalog.default_models.get(serving, "")

    def check_endpoint(self, endpoint: str) -> None:
        """A stored endpoint must still pass today's rules (an allowlist entry may
        have been removed, or the development setting turned off, since it was
        saved): the tenant's key is never sent where the rules forbid."""
        problems = self._endpoint_verdicts.get(endpoint)
        if problems is None:
            problems = self._endpoints.check(_ENDPOINT_FIELD, endpoint)
            if len(self._endpoint_verdicts) >= _MAX_ENDPOINT_VERDICTS:
                self._endpoint_verdicts.clear()
            self._endpoint_verdicts[endpoint] = problems
        if problems:
            raise ProviderUnreachable(
                "the stored Azure endpoint is not allowed by this service any more "
                f"({problems[0].description}): update {_ENDPOINT_FIELD}",
                provider="azure",
                metadata={"endpoint_allowed": "false"},
            )

    def _credentials(self, tenant: ResolvedTenant, provider: str) -> Credentials:
        cfg = tenant.config
        if cfg.mode == MODE_MANAGED:
            return self._managed[provider]
        if provider == facts.AZURE:
            p = cfg.provider(facts.AZURE)
            self.check_endpoint(p.endpoint)  # before the key is even decrypted
            return Credentials("azure", tenant.key(facts.AZURE), p.endpoint, p.api_version)
        base = (
            self._settings.anthropic_base_url
            if provider == facts.ANTHROPIC
            else self._settings.openai_base_url
        )
        return Credentials(provider, tenant.key(provider), base)  # type: ignore[arg-type]

    def budget(self, deadline: float | None) -> tuple[float, bool]:
        """The upstream timeout for a call and whether the caller's deadline
        (rather than the service's own budget) set it."""
        ours = self._settings.upstream_timeout_seconds
        if deadline is None:
            return ours, False
        callers = deadline - DEADLINE_MARGIN_SECONDS
        if callers <= 0:
            raise DeadlineExceeded()
        return (callers, True) if callers < ours else (ours, False)
