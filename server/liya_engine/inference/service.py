"""Completion use cases: check, route, bound the cost, call the provider, account.

Plain async code, no grpc. Inputs are domain values; the caller's remaining
deadline comes in as seconds so the provider call never outlives the caller.
A call is checked (``checks``) before anything is read or sent, planned
(``plan``: provider, model, credentials, cost bound, budget), made through the
provider's adapter (``ports.ProviderAdapter``) and accounted (usage, cost,
latency, metrics). Each provider call has a client span while tracing is on
(``liya_engine.tracing.provider``; ``None`` and no work while it is off).
The outcome of each byok call goes to the key health recorder
(``liya_engine.config.health_recorder``: memory only on this path).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping

import liya_engine.tracing as tracing
from liya_engine.config.health import HEALTH_REASONS, shown_message
from liya_engine.config.health_recorder import HealthRecorder
from liya_engine.config.verify import TestedCredentials
from liya_engine.errors import (
    DeadlineExceeded,
    ProviderError,
    ProviderTimedOut,
    ProviderUnavailable,
)
from liya_engine.inference.checks import check_call
from liya_engine.inference.latency import LatencyTracker
from liya_engine.inference.plan import Plan, Planner
from liya_engine.inference.ports import Message, ProviderAdapter, StreamDelta, StreamEnd
from liya_engine.inference.probe import VERIFY_INTENT, probe_plan
from liya_engine.inference.tenants import TenantCache
from liya_engine.inference.values import (
    Completion,
    CompletionInput,
    StreamPiece,
    Usage,
    VerifyResult,
)
from liya_engine.metrics import Metrics
from liya_engine.providers import facts
from liya_engine.routing.catalog import Catalog
from liya_engine.settings import Settings
from liya_engine.tracing import provider as spans

__all__ = [
    "Completion",
    "CompletionInput",
    "InferenceService",
    "StreamPiece",
    "Usage",
    "VerifyResult",
]


class InferenceService:
    """Runs completion calls for tenants."""

    def __init__(
        self,
        tenants: TenantCache,
        adapters: Mapping[str, ProviderAdapter],
        catalog: Catalog,
        settings: Settings,
        metrics: Metrics,
        *,
        health: HealthRecorder | None = None,
    ) -> None:
        self._tenants = tenants
        self._settings = settings
        self._health = health
        self.adapters = adapters
        self._catalog = catalog
        self._metrics = metrics
        self.latency = LatencyTracker()
        self._planner = Planner(catalog, settings, self.latency)
        self.managed_providers: tuple[str, ...] = self._planner.managed_providers

    # -- public use cases -----------------------------------------------------

    async def complete(
        self, tenant_id: str, request_id: str, call: CompletionInput, *, deadline: float | None
    ) -> Completion:
        """One completion for ``tenant_id``; raises the errors of DESIGN.md's table."""
        plan = await self._plan(tenant_id, call, deadline)
        adapter = self.adapters[plan.creds.provider]
        traced = _trace_call(plan, call.intent)
        started = time.perf_counter()
        try:
            result = await adapter.complete(plan.creds, plan.request)
        except ProviderError as exc:
            raise self._failed(plan, exc, started, traced) from None
        except BaseException as exc:
            spans.failed(traced, exc)
            raise
        elapsed = time.perf_counter() - started
        usage = self._account(plan, result.input_tokens, result.output_tokens, request_id, elapsed)
        _trace_success(traced, usage, result.model)
        return Completion(result.text, result.finish_reason, usage)

    async def complete_stream(
        self, tenant_id: str, request_id: str, call: CompletionInput, *, deadline: float | None
    ) -> AsyncIterator[StreamPiece]:
        """Deltas of one completion, then a piece with the finish reason and usage;
        a provider failure, also mid-stream, is raised."""
        plan = await self._plan(tenant_id, call, deadline)
        adapter = self.adapters[plan.creds.provider]
        traced = _trace_call(plan, call.intent)
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
                    # Traced before the last piece is handed on: the caller may
                    # stop reading once it has the usage.
                    _trace_success(traced, usage, event.model)
                    traced = None
                    yield StreamPiece(finish_reason=event.finish_reason, usage=usage)
                    return
        except ProviderError as exc:
            raise self._failed(plan, exc, started, traced) from None
        except BaseException as exc:
            spans.failed(traced, exc)
            raise
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
            traced,
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
        # Without an intent, verify what the serving provider's default model does.
        plan = await self._plan(
            tenant_id, call, deadline, check_cost=False, default_model_only=not intent
        )
        return await self._verified(plan, call.intent)

    async def verify_credentials(
        self,
        tenant_id: str,
        request_id: str,
        credentials: TestedCredentials,
        *,
        deadline: float | None,
    ) -> None:
        """UpdateConfig's ``verify``: a minimal real call with credentials not
        stored yet, answering with the errors a completion would
        (``config.verify.CredentialsProbe``). Counted under intent ``verify``."""
        plan = probe_plan(self._planner, self._catalog, self._settings, credentials, deadline)
        await self._verified(plan, VERIFY_INTENT)

    async def _verified(self, plan: Plan, intent: str) -> VerifyResult:
        """Make a verify call (VerifyConfig's or UpdateConfig's, attributed to
        ``intent``) and account it: the one place both kinds are counted."""
        traced = _trace_call(plan, intent)
        started = time.perf_counter()
        try:
            result = await self.adapters[plan.creds.provider].complete(plan.creds, plan.request)
        except ProviderError as exc:
            raise self._failed(plan, exc, started, traced) from None
        except BaseException as exc:
            spans.failed(traced, exc)
            raise
        elapsed = time.perf_counter() - started
        self._metrics.provider_call(plan.creds.provider, plan.request.model, plan.mode, "", elapsed)
        if plan.health is not None and self._health is not None:
            self._health.succeeded(plan.health.tenant_id, plan.creds.provider, plan.health.version)
        spans.succeeded(
            traced,
            response_model=result.model,
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
            cost_usd=None,  # a check, not billed usage
        )
        return VerifyResult(plan.creds.provider, plan.request.model, plan.mode, elapsed)

    # -- steps ------------------------------------------------------------------

    async def _plan(
        self,
        tenant_id: str,
        call: CompletionInput,
        deadline: float | None,
        *,
        check_cost: bool = True,
        default_model_only: bool = False,
    ) -> Plan:
        # The call's own shape first: a malformed call is INVALID_REQUEST even
        # while the database cannot be read.
        check_call(call, self._catalog.intents)
        tenant = await self._tenants.get(tenant_id)
        return self._planner.plan(
            tenant, call, deadline, check_cost=check_cost, default_model_only=default_model_only
        )

    def _failed(
        self, plan: Plan, exc: ProviderError, started: float, traced: spans.ProviderCall | None
    ) -> Exception:
        """Account a failed provider call; return what the caller is to get."""
        elapsed = time.perf_counter() - started
        self._metrics.provider_call(
            plan.creds.provider, plan.request.model, plan.mode, exc.reason, elapsed
        )
        if isinstance(exc, ProviderTimedOut) and plan.caller_bound:
            deadline = DeadlineExceeded()
            spans.failed(traced, deadline)
            return deadline
        if plan.health is not None and self._health is not None and exc.reason in HEALTH_REASONS:
            message = shown_message(exc.message, (plan.creds.api_key,))
            self._health.failed(
                plan.health.tenant_id, plan.creds.provider, plan.health.version, exc.reason, message
            )
        if not exc.model:
            exc.model = plan.request.model
            exc.metadata.setdefault("model", plan.request.model)
        exc.metadata.setdefault("mode", plan.mode)
        spans.failed(traced, exc)
        return exc

    def _account(
        self, plan: Plan, input_tokens: int, output_tokens: int, request_id: str, elapsed: float
    ) -> Usage:
        provider, model = plan.creds.provider, plan.request.model
        cost = plan.model_info.cost(input_tokens, output_tokens) if plan.model_info else 0.0
        self.latency.observe(provider, model, elapsed)
        self._metrics.provider_call(provider, model, plan.mode, "", elapsed)
        self._metrics.usage(provider, model, input_tokens, output_tokens, cost)
        if plan.health is not None and self._health is not None:
            self._health.succeeded(plan.health.tenant_id, provider, plan.health.version)
        return Usage(
            input_tokens, output_tokens, round(cost, 10), provider, model, plan.mode, request_id
        )


def _trace_call(plan: Plan, intent: str) -> spans.ProviderCall | None:
    if tracing.TRACER is None:  # off: one check, nothing made
        return None
    return spans.start(plan.creds.provider, plan.request.model, intent=intent, mode=plan.mode)


def _trace_success(traced: spans.ProviderCall | None, usage: Usage, response_model: str) -> None:
    if traced is None:
        return
    spans.succeeded(
        traced,
        response_model=response_model,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cost_usd=usage.cost_usd,
    )
