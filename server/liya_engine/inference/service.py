"""Completion use cases: route, bound the cost, call the provider, account.

Plain async code, no grpc. Inputs are domain values; the caller's remaining
deadline comes in as seconds so the provider call never outlives the caller.

Prompt tokens are estimated before the call as one token per three characters
of message text plus four per message and three for the reply primer. Real
tokenisers give about four characters per token for English, so the estimate
errs high, which is the safe side for a cost limit.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

from liya_engine.config.model import MODE_BYOK, MODE_MANAGED
from liya_engine.config.validation import check_endpoint
from liya_engine.errors import (
    CostLimitExceeded,
    DeadlineExceeded,
    FieldViolation,
    InvalidRequest,
    NotConfigured,
    ProviderError,
    ProviderModelNotFound,
    ProviderTimedOut,
    ProviderUnavailable,
    ProviderUnreachable,
)
from liya_engine.inference.tenants import ResolvedTenant, TenantCache
from liya_engine.metrics import Metrics
from liya_engine.providers import facts
from liya_engine.providers.base import (
    Credentials,
    Message,
    ProviderAdapter,
    ProviderRequest,
    StreamDelta,
    StreamEnd,
)
from liya_engine.redact import shown
from liya_engine.routing.catalog import Catalog, ModelInfo
from liya_engine.routing.router import available_providers, choose_model, provider_for_model
from liya_engine.secret import Secret
from liya_engine.settings import Settings

ROLES = ("system", "user", "assistant")
MAX_MESSAGES = 256
MAX_INPUT_CHARS = 1_000_000
MAX_TOKENS_CEILING = 200_000
DEADLINE_MARGIN_SECONDS = 0.05


@dataclass(frozen=True, slots=True)
class CompletionInput:
    intent: str
    messages: tuple[Message, ...]
    max_tokens: int | None = None
    temperature: float | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int
    output_tokens: int
    cost_usd: float
    provider: str
    model: str
    mode: str
    request_id: str

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    finish_reason: str
    usage: Usage


@dataclass(frozen=True, slots=True)
class StreamPiece:
    delta: str = ""
    finish_reason: str = ""
    usage: Usage | None = None


@dataclass(frozen=True, slots=True)
class VerifyResult:
    provider: str
    model: str
    mode: str
    latency_seconds: float


@dataclass(frozen=True, slots=True)
class _Plan:
    creds: Credentials
    request: ProviderRequest
    model_info: ModelInfo | None
    mode: str
    caller_bound: bool  # the caller's deadline, not our own budget, limits the call


_INTENT_SHAPE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def _shown_intent(intent: str) -> str:
    # Only name-shaped input is echoed back; anything else may be a pasted key.
    return shown(intent, _INTENT_SHAPE)


def _tokens_that_fit(limit: float, prompt_cost: float, per_output: float) -> int:
    """The most output tokens whose worst case stays within ``limit``, checked
    with the very sum the limit check uses (a division can round one over)."""
    fits = max(0, math.floor((limit - prompt_cost) / per_output))
    while fits > 0 and prompt_cost + fits * per_output > limit:
        fits -= 1
    return fits


def estimate_prompt_tokens(messages: Sequence[Message]) -> int:
    return sum(math.ceil(len(m.content) / 3) + 4 for m in messages) + 3


class LatencyTracker:
    """Exponentially weighted moving average of provider latency per model."""

    def __init__(self, alpha: float = 0.2) -> None:
        self._alpha = alpha
        self._values: dict[tuple[str, str], float] = {}

    def observe(self, provider: str, model: str, seconds: float) -> None:
        key = (provider, model)
        old = self._values.get(key)
        self._values[key] = seconds if old is None else old + self._alpha * (seconds - old)

    def __call__(self, provider: str, model: str) -> float | None:
        return self._values.get((provider, model))


class InferenceService:
    """Runs completion calls for tenants."""

    def __init__(
        self,
        tenants: TenantCache,
        adapters: Mapping[str, ProviderAdapter],
        catalog: Catalog,
        settings: Settings,
        metrics: Metrics,
    ) -> None:
        self._tenants = tenants
        self.adapters = adapters
        self._catalog = catalog
        self._settings = settings
        self._metrics = metrics
        self.latency = LatencyTracker()
        m = settings.managed
        self._managed: dict[str, Credentials] = {}
        if m.azure is not None:
            self._managed["azure"] = Credentials(
                "azure", m.azure.api_key, m.azure.endpoint, m.azure.api_version
            )
        if m.anthropic_api_key:
            self._managed["anthropic"] = Credentials(
                "anthropic", m.anthropic_api_key, settings.anthropic_base_url
            )
        if m.openai_api_key:
            self._managed["openai"] = Credentials(
                "openai", m.openai_api_key, settings.openai_base_url
            )
        self._endpoint_checks: dict[str, list] = {}
        self.managed_providers: tuple[str, ...] = tuple(self._managed)

    # -- public use cases -----------------------------------------------------

    async def complete(
        self, tenant_id: str, request_id: str, call: CompletionInput, *, deadline: float | None
    ) -> Completion:
        tenant = await self._tenants.get(tenant_id)
        plan = self._plan(tenant, call, deadline)
        adapter = self.adapters[plan.creds.provider]
        started = time.perf_counter()
        try:
            result = await adapter.complete(plan.creds, plan.request)
        except ProviderError as exc:
            raise self._failed(plan, exc, started) from None
        elapsed = time.perf_counter() - started
        usage = self._account(plan, result.input_tokens, result.output_tokens, request_id, elapsed)
        return Completion(result.text, result.finish_reason, usage)

    async def complete_stream(
        self, tenant_id: str, request_id: str, call: CompletionInput, *, deadline: float | None
    ) -> AsyncIterator[StreamPiece]:
        tenant = await self._tenants.get(tenant_id)
        plan = self._plan(tenant, call, deadline)
        adapter = self.adapters[plan.creds.provider]
        started = time.perf_counter()
        stream = adapter.stream(plan.creds, plan.request)
        try:
            async for event in stream:
                if isinstance(event, StreamDelta):
                    if event.text:
                        yield StreamPiece(delta=event.text)
                elif isinstance(event, StreamEnd):
                    usage = self._account(
                        plan,
                        event.input_tokens,
                        event.output_tokens,
                        request_id,
                        time.perf_counter() - started,
                    )
                    yield StreamPiece(finish_reason=event.finish_reason, usage=usage)
                    return
        except ProviderError as exc:
            raise self._failed(plan, exc, started) from None
        finally:
            await stream.aclose()
        raise self._failed(
            plan,
            ProviderUnavailable(
                f"{facts.TITLES[plan.creds.provider]} ended the stream without finishing the "
                "answer; retry the call",
                provider=plan.creds.provider,
                model=plan.request.model,
            ),
            started,
        )

    async def verify(
        self, tenant_id: str, request_id: str, *, intent: str, deadline: float | None
    ) -> VerifyResult:
        """A minimal real call through the provider the tenant's calls use now."""
        call = CompletionInput(
            intent=intent or "general_chat",
            messages=(Message("user", "Reply with OK."),),
            max_tokens=1,
        )
        tenant = await self._tenants.get(tenant_id)
        # Without an intent, verify what the serving provider's default model does.
        plan = self._plan(tenant, call, deadline, check_cost=False, default_model_only=not intent)
        started = time.perf_counter()
        try:
            await self.adapters[plan.creds.provider].complete(plan.creds, plan.request)
        except ProviderError as exc:
            raise self._failed(plan, exc, started) from None
        elapsed = time.perf_counter() - started
        self._metrics.provider_call(plan.creds.provider, plan.request.model, plan.mode, "", elapsed)
        return VerifyResult(plan.creds.provider, plan.request.model, plan.mode, elapsed)

    # -- steps ------------------------------------------------------------------

    def _validate(self, call: CompletionInput) -> None:
        bad: list[FieldViolation] = []
        if call.intent not in self._catalog.intents:
            bad.append(
                FieldViolation(
                    "intent",
                    f"unknown intent {_shown_intent(call.intent)}; known: "
                    + ", ".join(sorted(self._catalog.intents)),
                )
            )
        if not call.messages:
            bad.append(FieldViolation("messages", "must have at least one message"))
        if len(call.messages) > MAX_MESSAGES:
            bad.append(FieldViolation("messages", f"must have at most {MAX_MESSAGES} messages"))
        for i, m in enumerate(call.messages[:MAX_MESSAGES]):
            if m.role not in ROLES:
                bad.append(
                    FieldViolation(f"messages[{i}].role", "must be system, user or assistant")
                )
            if not m.content.strip():
                bad.append(FieldViolation(f"messages[{i}].content", "must not be empty"))
        if call.messages and call.messages[-1].role == "system":
            bad.append(FieldViolation("messages", "the last message must be user or assistant"))
        if sum(len(m.content) for m in call.messages) > MAX_INPUT_CHARS:
            bad.append(
                FieldViolation(
                    "messages", f"total text must be at most {MAX_INPUT_CHARS} characters"
                )
            )
        if call.max_tokens is not None and not 1 <= call.max_tokens <= MAX_TOKENS_CEILING:
            bad.append(FieldViolation("max_tokens", f"must be 1 to {MAX_TOKENS_CEILING}"))
        if call.temperature is not None and not (
            math.isfinite(call.temperature) and 0 <= call.temperature <= 2
        ):
            bad.append(FieldViolation("temperature", "must be from 0 to 2"))
        if bad:
            raise InvalidRequest(f"invalid request: {bad[0].field} {bad[0].description}", bad)

    def _plan(
        self,
        tenant: ResolvedTenant,
        call: CompletionInput,
        deadline: float | None,
        *,
        check_cost: bool = True,
        default_model_only: bool = False,
    ) -> _Plan:
        self._validate(call)
        cfg = tenant.config
        available = available_providers(cfg, self.managed_providers)
        if not available:
            if cfg.mode == MODE_BYOK:
                raise NotConfigured(
                    "byok mode but no provider key is set: set one with "
                    "UpdateConfig, or switch provider_config.mode to managed",
                    metadata={"mode": cfg.mode},
                )
            raise NotConfigured(
                "managed mode is not available: the platform has no provider "
                "credentials configured (operator: set LIYA_MANAGED_*)",
                metadata={"mode": cfg.mode},
            )
        serving = available[0]
        if cfg.mode == MODE_MANAGED:
            default_model = (
                self._settings.managed.azure.deployment
                if serving == "azure" and self._settings.managed.azure
                else self._catalog.default_models.get(serving, "")
            )
        else:
            p = cfg.provider(serving)
            default_model = (
                p.deployment_name if serving == "azure" else p.default_model
            ) or self._catalog.default_models.get(serving, "")
        model, chosen_by = choose_model(
            intent=call.intent,
            strategy="" if default_model_only else cfg.model.strategy,
            overrides={} if default_model_only else cfg.model.overrides,
            serving=serving,
            default_model=default_model,
            catalog=self._catalog,
            latency_of=self.latency,
        )
        provider = provider_for_model(model, available)
        if provider is None:
            raise ProviderModelNotFound(
                f"no {'configured' if cfg.mode == MODE_BYOK else 'managed'} provider serves "
                f"model {model!r} (chosen by {chosen_by} for intent {call.intent}): configure "
                f"{'Anthropic' if model.startswith('claude') else 'OpenAI or Azure OpenAI'} "
                "or change the override",
                provider=serving,
                model=model,
            )
        creds = self._credentials(tenant, provider)
        # A model chosen for another provider (e.g. a Claude override while Azure
        # serves) keeps its name; Azure treats the model name as the deployment.
        info = self._catalog.model(model)
        max_tokens = call.max_tokens
        if check_cost:
            max_tokens = self._fit_cost(
                cfg.model.cost_limit_usd_per_request, info, model, call, provider
            )
        elif max_tokens is None:
            max_tokens = self._catalog.default_max_output_tokens
        timeout, caller_bound = self._budget(deadline)
        request = ProviderRequest(
            model=model,
            messages=call.messages,
            max_tokens=max_tokens,
            timeout=timeout,
            temperature=call.temperature,
        )
        return _Plan(creds, request, info, cfg.mode, caller_bound)

    def _check_endpoint(self, endpoint: str) -> None:
        """A stored endpoint must still pass today's rules (an allowlist entry may
        have been removed, or the development setting turned off, since it was
        saved): the tenant's key is never sent where the rules forbid."""
        problems = self._endpoint_checks.get(endpoint)
        if problems is None:
            problems = check_endpoint(
                "provider_config.azure.endpoint",
                endpoint,
                allowlist=self._settings.azure_endpoint_allowlist,
                allow_insecure=self._settings.allow_insecure_endpoints,
            )
            if len(self._endpoint_checks) >= 10_000:
                self._endpoint_checks.clear()
            self._endpoint_checks[endpoint] = problems
        if problems:
            raise ProviderUnreachable(
                "the stored Azure endpoint is not allowed by this service any more "
                f"({problems[0].description}): update provider_config.azure.endpoint",
                provider="azure",
                metadata={"endpoint_allowed": "false"},
            )

    def _credentials(self, tenant: ResolvedTenant, provider: str) -> Credentials:
        cfg = tenant.config
        if cfg.mode == MODE_MANAGED:
            return self._managed[provider]
        if provider == "azure":
            p = cfg.provider("azure")
            self._check_endpoint(p.endpoint)  # before the key is even decrypted
            return Credentials("azure", tenant.key("azure"), p.endpoint, p.api_version)
        key: Secret = tenant.key(provider)
        base = (
            self._settings.anthropic_base_url
            if provider == "anthropic"
            else self._settings.openai_base_url
        )
        return Credentials(provider, key, base)  # type: ignore[arg-type]

    def _fit_cost(
        self,
        limit: float | None,
        info: ModelInfo | None,
        model: str,
        call: CompletionInput,
        provider: str,
    ) -> int:
        default = self._catalog.default_max_output_tokens
        if info is not None:
            default = min(default, info.max_output_tokens)
        if limit is None:
            return call.max_tokens if call.max_tokens is not None else default
        meta = {"limit_usd": f"{limit:.6f}", "model": model, "provider": provider}
        if info is None:
            raise CostLimitExceeded(
                f"model {model!r} has no price in the catalog, so a call cannot be kept under "
                f"the cost limit of ${limit:g}: add the model to the catalog or remove "
                "model_config.cost_limit_usd_per_request",
                metadata=meta,
            )
        prompt = estimate_prompt_tokens(call.messages)
        prompt_cost = prompt * info.input_per_million / 1_000_000
        per_output = info.output_per_million / 1_000_000
        if call.max_tokens is not None:
            estimate = prompt_cost + call.max_tokens * per_output
            if estimate > limit:
                fits = _tokens_that_fit(limit, prompt_cost, per_output)
                raise CostLimitExceeded(
                    f"worst-case cost ${estimate:.6f} ({prompt} prompt tokens estimated + "
                    f"{call.max_tokens} max_tokens on {model}) is above the limit of "
                    f"${limit:g}: lower max_tokens to at most {fits} or raise the limit",
                    metadata={
                        **meta,
                        "estimate_usd": f"{estimate:.6f}",
                        "max_tokens_that_fit": str(fits),
                    },
                )
            return call.max_tokens
        affordable = _tokens_that_fit(limit, prompt_cost, per_output) if per_output else default
        if affordable < 1:
            raise CostLimitExceeded(
                f"the prompt alone is estimated at ${prompt_cost:.6f} ({prompt} tokens on "
                f"{model}), at or above the limit of ${limit:g}: shorten the prompt or raise "
                "the limit",
                metadata={**meta, "estimate_usd": f"{prompt_cost:.6f}"},
            )
        return min(default, affordable)

    def _budget(self, deadline: float | None) -> tuple[float, bool]:
        ours = self._settings.upstream_timeout_seconds
        if deadline is None:
            return ours, False
        callers = deadline - DEADLINE_MARGIN_SECONDS
        if callers <= 0:
            raise DeadlineExceeded()
        return (callers, True) if callers < ours else (ours, False)

    def _failed(self, plan: _Plan, exc: ProviderError, started: float) -> Exception:
        elapsed = time.perf_counter() - started
        self._metrics.provider_call(
            plan.creds.provider, plan.request.model, plan.mode, exc.reason, elapsed
        )
        if isinstance(exc, ProviderTimedOut) and plan.caller_bound:
            return DeadlineExceeded()
        if not exc.model:
            exc.model = plan.request.model
            exc.metadata.setdefault("model", plan.request.model)
        exc.metadata.setdefault("mode", plan.mode)
        return exc

    def _account(
        self, plan: _Plan, input_tokens: int, output_tokens: int, request_id: str, elapsed: float
    ) -> Usage:
        provider, model = plan.creds.provider, plan.request.model
        cost = plan.model_info.cost(input_tokens, output_tokens) if plan.model_info else 0.0
        self.latency.observe(provider, model, elapsed)
        self._metrics.provider_call(provider, model, plan.mode, "", elapsed)
        self._metrics.usage(provider, model, input_tokens, output_tokens, cost)
        return Usage(
            input_tokens, output_tokens, round(cost, 10), provider, model, plan.mode, request_id
        )
